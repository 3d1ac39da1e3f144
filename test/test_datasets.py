"""nuScenes and ZJU-4DRadarCam datasets (xdrcdepth_ros.data) on real and hand-made folders."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from xdrcdepth_ros.core import geometry
from xdrcdepth_ros.data import NuScenesDataset, ZJU4DRadarCamDataset
from xdrcdepth_ros.data.nuscenes_gt import LidarAccumulator
from xdrcdepth_ros.core.errors import DatasetError
from xdrcdepth_ros.core.nuscenes_io import radar_xyz, read_pcd

H, W = 352, 704


@pytest.fixture(scope='module')
def dataset(nuscenes_root):
    return NuScenesDataset(nuscenes_root, version='v1.0-mini', split='all', height=H, width=W)


@pytest.fixture(scope='module')
def nuscenes_samples(dataset):
    return [dataset[i] for i in range(len(dataset))]


def test_bundled_frames_are_served(dataset, nuscenes_samples):
    """All 8 bundled keyframes load at the model size with the documented layout."""
    assert len(dataset) == 8
    for s in nuscenes_samples:
        assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8
        assert s.radar.shape == (4, H, W) and s.radar_channels == ('depth', 'rcs', 'vx', 'vy')
        assert s.gt_sparse.shape == (H, W) and not s.gt_dense.any()
        assert s.meta['source'] == 'nuscenes'


def test_radar_map_is_geometry_radar_map_of_raw_front_sweep(keyframes, dataset,
                                                            nuscenes_samples):
    """Every RADAR_FRONT point (no filtering), raw rcs/vx/vy, projected with the model-size K:
    the same call the node makes."""
    for kf, s in zip(keyframes, nuscenes_samples):
        raw = read_pcd(kf.sensors['RADAR_FRONT'].path)
        K = geometry.InputTransform.fit(1600, 900, W, H).apply_to_K(kf.K)
        np.testing.assert_allclose(s.K, K)
        features = np.stack([raw['rcs'], raw['vx'], raw['vy']], 1).astype(np.float32)
        expected = geometry.radar_map(radar_xyz(raw), features, kf.T_cam_from('RADAR_FRONT'),
                                      K, W, H)
        np.testing.assert_array_equal(s.radar, expected)
        assert len(s.meta['radar_points']) == len(raw)


def test_no_radar_filter_is_applied_compared_with_devkit(keyframes, dataset):
    """Our points equal the devkit's RadarPointCloud with disable_filters() (the paper setup)."""
    pytest.importorskip('nuscenes')
    from nuscenes.utils.data_classes import RadarPointCloud

    RadarPointCloud.disable_filters()
    try:
        cloud = RadarPointCloud.from_file(str(keyframes[0].sensors['RADAR_FRONT'].path))
    finally:
        RadarPointCloud.default_filters()
    filtered = RadarPointCloud.from_file(str(keyframes[0].sensors['RADAR_FRONT'].path))
    meta = dataset[0].meta
    np.testing.assert_allclose(meta['radar_points'], cloud.points[:3].T, rtol=1e-6)
    np.testing.assert_allclose(meta['radar_features'], cloud.points[5:8].T, rtol=1e-6)
    assert filtered.points.shape[1] <= cloud.points.shape[1]


def test_lidar_gt_is_geometry_lidar_depth_map(keyframes, nuscenes_samples):
    """gt_sparse is the single keyframe LIDAR_TOP scan through geometry.lidar_depth_map."""
    for kf, s in zip(keyframes, nuscenes_samples):
        expected = geometry.lidar_depth_map(kf.read_lidar()[:, :3], kf.T_cam_from('LIDAR_TOP'),
                                            s.K, W, H)
        np.testing.assert_array_equal(s.gt_sparse, expected)
        assert 1500 < (s.gt_sparse > 0).sum() < 6000


def test_image_is_input_transform_of_the_jpeg(keyframes, nuscenes_samples):
    """The image is resized and cropped exactly as the node's preprocessing does it."""
    transform = geometry.InputTransform.fit(1600, 900, W, H)
    np.testing.assert_array_equal(nuscenes_samples[3].image,
                                  transform.apply_to_image(keyframes[3].read_image()))


def test_radar_fields_and_vertical_crop_are_configurable(nuscenes_root, keyframes):
    """Compensated velocities and a centre crop change the map the documented way."""
    d = NuScenesDataset(nuscenes_root, 'v1.0-mini', 'all', 256, 448,
                        radar_fields=('rcs', 'vx_comp', 'vy_comp'), vertical='center')
    s = d[5]
    raw = read_pcd(keyframes[5].sensors['RADAR_FRONT'].path)
    K = geometry.InputTransform.fit(1600, 900, 448, 256, 'center').apply_to_K(keyframes[5].K)
    features = np.stack([raw['rcs'], raw['vx_comp'], raw['vy_comp']], 1).astype(np.float32)
    expected = geometry.radar_map(radar_xyz(raw), features, keyframes[5].T_cam_from('RADAR_FRONT'),
                                  K, 448, 256)
    np.testing.assert_array_equal(s.radar, expected)
    assert s.radar_channels == ('depth', 'rcs', 'vx_comp', 'vy_comp')
    with pytest.raises(ValueError, match='unknown radar fields'):
        NuScenesDataset(nuscenes_root, 'v1.0-mini', 'all', H, W, radar_fields=('speed',))


def test_scene_and_split_selection(nuscenes_root):
    """Scenes can be picked by name or official split; an empty selection is a clear error."""
    one = NuScenesDataset(nuscenes_root, 'v1.0-mini', scenes=['scene-0916'], height=H, width=W)
    assert len(one) == 4 and {kf.scene_name for kf in one.keyframes} == {'scene-0916'}
    pytest.importorskip('nuscenes')
    val = NuScenesDataset(nuscenes_root, 'v1.0-mini', split='val', height=H, width=W)
    assert {kf.scene_name for kf in val.keyframes} == {'scene-0916'}  # mini_val
    with pytest.raises(DatasetError, match='scenes present'):
        NuScenesDataset(nuscenes_root, 'v1.0-mini', split='train', height=H, width=W)
    with pytest.raises(DatasetError, match='unknown nuScenes split'):
        NuScenesDataset(nuscenes_root, 'v1.0-mini', split='holdout', height=H, width=W)


def test_missing_dataroot_is_a_dataset_error(tmp_path):
    """A wrong path names the missing table."""
    with pytest.raises(DatasetError, match='missing nuScenes table'):
        NuScenesDataset(tmp_path, 'v1.0-mini', height=H, width=W)


def test_accumulated_gt_is_denser_and_keeps_the_reference_scan(nuscenes_root,
                                                              nuscenes_samples):
    """Neighbouring scans add static points; where the single scan has a return the merged map
    has one no farther away (nearest wins)."""
    d = NuScenesDataset(nuscenes_root, 'v1.0-mini', 'all', H, W, lidar_scans=3)
    s = d[1]
    single = nuscenes_samples[1].gt_sparse
    np.testing.assert_array_equal(s.gt_sparse, single)
    assert (s.gt_dense > 0).sum() > 3 * (single > 0).sum()
    has = single > 0
    assert np.all(s.gt_dense[has] > 0) and np.all(s.gt_dense[has] <= single[has] + 1e-4)
    # The LiDAR's ~10k returns off the ego car's roof, seen from a later scan, would sit a few
    # metres ahead of the camera at eye height; they must not reach the GT.
    upper = s.gt_dense[:int(s.K[1, 2]) + 10]
    assert np.count_nonzero((upper > 0) & (upper < 6.0)) == 0


def test_dynamic_boxes_are_removed_like_devkit_points_in_box(nuscenes_root, nuscenes_tables,
                                                            keyframes):
    """Points of a neighbour scan inside annotated vehicle/person boxes are dropped; the count
    matches nuscenes-devkit's points_in_box on the same boxes."""
    pytest.importorskip('nuscenes')
    pytest.importorskip('pyquaternion')
    from nuscenes.utils.data_classes import Box
    from nuscenes.utils.geometry_utils import points_in_box
    from pyquaternion import Quaternion

    accumulator = LidarAccumulator(nuscenes_tables, 'v1.0-mini', box_margin_m=0.0)
    kf = keyframes[0]
    neighbour = accumulator.neighbours(kf, 1)[-1]
    assert neighbour['token'] != kf.sensors['LIDAR_TOP'].token
    sensor = nuscenes_tables.sensor_record(neighbour)
    points = np.fromfile(sensor.path, dtype='<f4').reshape(-1, 5)[:, :3].astype(np.float64)
    kept = accumulator._drop_boxes(points, sensor, neighbour)
    T = (geometry.transform_from_wxyz(sensor.ego_pose['translation'], sensor.ego_pose['rotation'])
         @ geometry.transform_from_wxyz(sensor.calibrated_sensor['translation'],
                                        sensor.calibrated_sensor['rotation']))
    world = (points @ T[:3, :3].T + T[:3, 3]).T
    inside = np.zeros(len(points), dtype=bool)
    for ann in accumulator._boxes[neighbour['sample_token']]:
        box = Box(ann['translation'], ann['size'], Quaternion(ann['rotation']))
        inside |= points_in_box(box, world)
    assert inside.sum() > 50  # the scene has cars and people close to the ego vehicle
    assert len(kept) == len(points) - inside.sum()


def test_prepare_caches_samples_and_reads_them_back(tmp_path, nuscenes_root,
                                                   nuscenes_samples):
    """prepare() writes one npz per keyframe; the dataset then serves identical samples."""
    d = NuScenesDataset(nuscenes_root, 'v1.0-mini', scenes=['scene-0523'], height=H, width=W)
    paths = d.prepare(tmp_path)
    assert len(paths) == 4 and all(p.is_file() for p in paths)
    mtime = paths[0].stat().st_mtime_ns
    again = NuScenesDataset(nuscenes_root, 'v1.0-mini', scenes=['scene-0523'], height=H,
                            width=W, cache_dir=tmp_path)
    s = again[0]
    np.testing.assert_array_equal(s.radar, nuscenes_samples[0].radar)
    np.testing.assert_array_equal(s.image, nuscenes_samples[0].image)
    assert s.meta['sample_token'] == nuscenes_samples[0].meta['sample_token']
    d.prepare(tmp_path)
    assert paths[0].stat().st_mtime_ns == mtime  # existing files are kept
    other = NuScenesDataset(nuscenes_root, 'v1.0-mini', scenes=['scene-0523'], height=H,
                            width=W, radar_fields=('rcs',))
    assert other.config_key() != d.config_key()


# ------------------------------------------------------------------ ZJU-4DRadarCam


def _write_zju(root, names=('000001', '000002')):
    """A tiny ZJU-4DRadarCam folder: 1280x720 images, radar npy, 16-bit depth PNGs."""
    data = root / 'data'
    for folder in ('image', 'radar', 'gt', 'gt_interp'):
        (data / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in names:
        cv2.imwrite(str(data / 'image' / f'{name}.png'),
                    rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8))
        radar = np.array([[100.0, 200.0, 12.5], [101.0, 200.0, 30.0], [1279.0, 0.0, 50.0],
                          [640.0, 700.0, 8.0]])
        np.save(data / 'radar' / f'{name}.npy', radar)
        gt = np.zeros((720, 1280), np.uint16)
        gt[300, 400] = 20 * 256
        gt[300, 401] = int(35.5 * 256)  # same model pixel as (300, 400): nearer wins
        gt[300, 403] = int(35.5 * 256)
        cv2.imwrite(str(data / 'gt' / f'{name}.png'), gt)
        cv2.imwrite(str(data / 'gt_interp' / f'{name}.png'), np.full((720, 1280), 2560,
                                                                     np.uint16))
    (data / 'train.txt').write_text('\n'.join(names) + '\n')
    (data / 'val.txt').write_text('')
    return data


def test_zju_sample_maps_pixels_through_the_input_transform(tmp_path):
    """1280x720 -> 640x352: scale 0.5, bottom crop of 8 rows; u' = 0.5(u + 0.5) - 0.5."""
    _write_zju(tmp_path)
    d = ZJU4DRadarCamDataset(tmp_path, 'train', 352, 640)
    assert len(d) == 2
    s = d[0]
    assert s.image.shape == (352, 640, 3) and s.radar.shape == (4, 352, 640)
    # (100, 200) and (101, 200) share pixel (50, 92): the nearer 12.5 m return wins.
    assert s.radar[0, 92, 50] == pytest.approx(12.5)
    assert s.radar[0, 0, 639] == 0  # v = 0 is above the bottom crop
    assert s.radar[0, 342, 320] == pytest.approx(8.0)
    assert np.count_nonzero(s.radar[0]) == 2
    assert not s.radar[1:].any() and s.meta['zero_channels'] == ['rcs', 'vx', 'vy']
    assert s.gt_sparse[142, 200] == pytest.approx(20.0)
    assert s.gt_sparse[142, 201] == pytest.approx(35.5)  # u' = 0.5 * 403.5 - 0.5 = 201.25
    assert np.count_nonzero(s.gt_sparse) == 2
    assert np.all(s.gt_dense == pytest.approx(10.0))
    assert np.isnan(s.K).all()


def test_zju_extra_columns_and_intrinsics(tmp_path):
    """Named npy columns fill radar channels; a given K is scaled and cropped."""
    data = _write_zju(tmp_path, names=('a',))
    np.save(data / 'radar' / 'a.npy', np.array([[100.0, 200.0, 12.5, 7.0]]))
    K = np.array([[1000.0, 0, 640], [0, 1000.0, 360], [0, 0, 1]])
    s = ZJU4DRadarCamDataset(data, 'train', 352, 640, K=K, extra_columns=('rcs',))[0]
    assert s.radar[1, 92, 50] == pytest.approx(7.0)
    np.testing.assert_allclose(
        s.K, geometry.InputTransform.fit(1280, 720, 640, 352).apply_to_K(K))


def test_zju_layout_errors_name_the_problem(tmp_path):
    """Missing folders, split files, empty splits and short npy rows raise DatasetError."""
    with pytest.raises(DatasetError, match='image'):
        ZJU4DRadarCamDataset(tmp_path, 'train', 352, 640)
    data = _write_zju(tmp_path)
    with pytest.raises(DatasetError, match='missing split file'):
        ZJU4DRadarCamDataset(tmp_path, 'test', 352, 640)
    with pytest.raises(DatasetError, match='lists no samples'):
        ZJU4DRadarCamDataset(tmp_path, 'val', 352, 640)
    np.save(data / 'radar' / '000001.npy', np.zeros((3, 2)))
    with pytest.raises(DatasetError, match='columns'):
        ZJU4DRadarCamDataset(tmp_path, 'train', 352, 640)[0]
    with pytest.raises(ValueError, match='split'):
        ZJU4DRadarCamDataset(tmp_path, 'holdout', 352, 640)
