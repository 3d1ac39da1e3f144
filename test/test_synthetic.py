"""Synthetic scenes, augmentation and the torch wrapper (xdrcdepth_ros.data)."""
from __future__ import annotations

import numpy as np
import pytest

from xdrcdepth_ros.core import geometry
from xdrcdepth_ros.data import augment, render_scene, Sample, SyntheticDataset
from xdrcdepth_ros.data.augmentation import crop, hflip, jitter_colors
from xdrcdepth_ros.data.cache import load_sample, save_sample
from xdrcdepth_ros.data.synthetic import NUSCENES_LIKE_K, scene_seed
from xdrcdepth_ros.data.synthetic_scene import Kind
from xdrcdepth_ros.data.synthetic_sensors import GHOST_KIND

H, W = 128, 256  # a small model size keeps the tests fast


@pytest.fixture(scope='module')
def samples() -> list[Sample]:
    return [render_scene(seed, out_height=H, out_width=W) for seed in range(4)]


@pytest.fixture(scope='module')
def model_sample() -> Sample:
    """One sample at the paper's training size, for density checks."""
    return render_scene(11, out_height=352, out_width=704)


def test_sample_shapes_and_types(samples):
    """Every array has the documented shape and dtype; radar channels are depth, rcs, vx, vy."""
    for s in samples:
        assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8
        assert s.radar.shape == (4, H, W) and s.radar.dtype == np.float32
        assert s.gt_sparse.shape == (H, W) and s.gt_sparse.dtype == np.float32
        assert s.gt_dense.shape == (H, W) and s.gt_dense.dtype == np.float32
        assert s.radar_channels == ('depth', 'rcs', 'vx', 'vy')


def test_model_K_is_the_input_transform_of_the_camera_K(samples):
    """Rendering directly at model size uses exactly the K the node's preprocessing would use."""
    for s in samples:
        transform = geometry.InputTransform.fit(1600, 900, W, H)
        np.testing.assert_allclose(s.K, transform.apply_to_K(s.meta['K_full']))
        assert abs(s.meta['K_full'][0, 0] / NUSCENES_LIKE_K[0, 0] - 1) <= 0.04


def test_camera_is_randomised_around_nuscenes_cam_front():
    """Focal length, principal point, pitch (as a cy shift) and height vary per scene, within
    the ranges the generator documents, centred on nuScenes CAM_FRONT."""
    from xdrcdepth_ros.data.synthetic import SceneGenerator
    from xdrcdepth_ros.data.synthetic_scene import generate_scene

    generator = SceneGenerator()
    Ks = np.array([generator.camera_K(np.random.default_rng(seed)) for seed in range(200)])
    fx, cx, cy = Ks[:, 0, 0], Ks[:, 0, 2], Ks[:, 1, 2]
    assert np.all(np.abs(fx / NUSCENES_LIKE_K[0, 0] - 1) <= 0.04) and fx.std() > 15
    assert np.all(np.abs(cx - 816.3) <= 15.0) and cx.std() > 5
    pitch_px = fx.max() * np.tan(np.radians(1.5))
    assert np.all(np.abs(cy - 480.0) <= 15.0 + pitch_px) and cy.std() > 10
    assert abs(np.median(cy) - 480.0) < 6.0
    heights = [generate_scene(np.random.default_rng(seed)).cam_height for seed in range(60)]
    assert 1.35 <= min(heights) < 1.45 and 1.65 < max(heights) <= 1.75


def test_radar_map_equals_geometry_radar_map_of_the_points(samples):
    """The training radar map is bit-identical to geometry.radar_map of the raw sweep."""
    for s in samples:
        m = s.meta
        expected = geometry.radar_map(m['radar_points'], m['radar_features'],
                                      m['T_cam_from_radar'], s.K, W, H)
        np.testing.assert_array_equal(s.radar, expected)
        assert (s.radar[0] > 0).sum() > 5


def test_radar_has_no_elevation(samples):
    """ARS408-like: z = 0 in the radar frame, so every return sits at the mount height, which
    is drawn per scene (0.45-0.8 m above the road)."""
    mounts = []
    for s in samples:
        m = s.meta
        assert np.all(m['radar_points'][:, 2] == 0)
        cam = m['radar_points'] @ m['T_cam_from_radar'][:3, :3].T + m['T_cam_from_radar'][:3, 3]
        np.testing.assert_allclose(cam[:, 1], m['cam_height'] - m['radar_mount_height'],
                                   atol=1e-5)
        assert np.ptp(cam[:, 1]) < 1e-5  # no elevation spread at all
        mounts.append(m['radar_mount_height'])
    assert all(0.45 <= h <= 0.8 for h in mounts) and np.ptp(mounts) > 0.01


def test_radar_density_and_rcs_are_ars408_like():
    """A few tens of returns per sweep in the camera view (the bundled nuScenes frames have
    45-81 radar pixels at 192x352); vehicles 5-20 dBsm, facades 3-20, the sweep's median near
    the real frames' 0-7 dBsm; weaker multipath ghosts at about twice a vehicle's range."""
    counts, rcs_vehicle, rcs_building, rcs_all, rcs_ghost = [], [], [], [], []
    for seed in range(16):
        s = render_scene(seed, out_height=H, out_width=W)
        m = s.meta
        _, _, index = geometry.project_points(m['radar_points'], m['T_cam_from_radar'],
                                              m['K_full'], 1600, 900)
        counts.append(len(index))
        kind = m['radar_kind'][index]
        rcs = m['radar_all_fields']['rcs'][index]
        rcs_all += rcs.tolist()
        rcs_vehicle += rcs[np.isin(kind, [Kind.CAR, Kind.TRUCK])].tolist()
        rcs_building += rcs[kind == Kind.BUILDING].tolist()
        rcs_ghost += rcs[kind == GHOST_KIND].tolist()
    assert 20 <= np.mean(counts) <= 130 and min(counts) >= 5, counts
    assert 5 <= np.median(rcs_vehicle) <= 20
    assert 3 <= np.median(rcs_building) <= 20
    assert -2 <= np.median(rcs_all) <= 10
    assert 3 <= len(rcs_ghost) and np.median(rcs_ghost) < np.median(rcs_vehicle) - 4


def test_radar_velocities_raw_include_ego_motion_and_compensated_do_not():
    """Static returns: compensated radial speed ~0; raw = -ego_speed * cos(azimuth)."""
    for seed in range(6):
        s = render_scene(seed, out_height=H, out_width=W)
        m = s.meta
        static = np.isin(m['radar_kind'], [Kind.BUILDING, Kind.POLE, Kind.WALL])
        if s.meta['ego_speed'] < 1 or static.sum() < 3:
            continue
        f = {k: v[static] for k, v in m['radar_all_fields'].items()}
        pts = m['radar_points'][static]
        azimuth = np.arctan2(pts[:, 1], pts[:, 0])
        radial_raw = f['vx'] * np.cos(azimuth) + f['vy'] * np.sin(azimuth)
        assert np.median(np.abs(np.hypot(f['vx_comp'], f['vy_comp']))) < 0.5
        np.testing.assert_allclose(np.median(radial_raw / np.cos(azimuth)), -m['ego_speed'],
                                   atol=0.5)
        return
    pytest.fail('no moving-ego scene with static returns among the seeds')


def test_sparse_gt_is_lidar_depth_map_of_the_lidar_points_and_exact(samples):
    """gt_sparse = geometry.lidar_depth_map(points) and equals the exact depth where valid."""
    for s in samples:
        expected = geometry.lidar_depth_map(s.meta['lidar_points'], np.eye(4), s.K, W, H)
        np.testing.assert_array_equal(s.gt_sparse, expected)
        valid = s.gt_sparse > 0
        assert valid.sum() > 100
        np.testing.assert_allclose(s.gt_sparse[valid], s.gt_dense[valid], rtol=1e-6)


def test_lidar_density_is_32_beam_like(model_sample):
    """~3k-5k LiDAR pixels at 352x704, on at most 32 beam rows (not a uniform sprinkle)."""
    valid = model_sample.gt_sparse > 0
    assert 2500 <= valid.sum() <= 5500
    cx = int(round(model_sample.K[0, 2]))
    rows_hit = np.count_nonzero(valid[:, cx - 2:cx + 3].any(axis=1))
    assert 8 <= rows_hit <= 32


def test_dense_depth_is_exact_on_the_road_and_zero_in_the_sky(samples):
    """Bottom-centre pixel sees the road: z = cam_height * fy / (v - cy). Sky pixels are 0."""
    for s in samples:
        fy, cy, cx = s.K[1, 1], s.K[1, 2], s.K[0, 2]
        col = int(round(cx))
        expected = s.meta['cam_height'] * fy / (H - 1 - cy)
        assert s.gt_dense[H - 1, col] == pytest.approx(expected, rel=1e-5)
        valid = s.gt_dense > 0
        assert 0 < valid.mean() < 1  # some sky
        assert s.gt_dense[valid].max() <= s.meta['z_end'] + 25
        assert s.gt_dense[valid].min() > 1.0


def test_direct_and_resize_modes_agree(samples):
    """Rendering at the model size matches rendering at 1600x900 then resizing, pixel for pixel
    except near depth edges."""
    direct = samples[0]
    resized = render_scene(0, out_height=H, out_width=W, mode='resize')
    np.testing.assert_allclose(resized.K, direct.K)
    np.testing.assert_array_equal(resized.radar, direct.radar)
    both = (direct.gt_dense > 0) & (resized.gt_dense > 0)
    close = np.abs(direct.gt_dense - resized.gt_dense) <= 0.02 * direct.gt_dense
    # Nearest-neighbour resampling differs at depth edges (~10 % of pixels in a busy street);
    # a view misaligned by one row agrees on only ~50-65 %.
    assert close[both].mean() > 0.85
    assert np.abs(direct.image.astype(int) - resized.image.astype(int)).mean() < 25


def test_same_seed_same_sample_and_different_seeds_differ(samples):
    """Rendering is a pure function of the seed."""
    again = render_scene(0, out_height=H, out_width=W)
    for name in ('image', 'radar', 'gt_sparse', 'gt_dense', 'K'):
        np.testing.assert_array_equal(getattr(again, name), getattr(samples[0], name))
    assert not np.array_equal(samples[0].image, samples[1].image)
    assert not np.array_equal(samples[0].gt_dense, samples[1].gt_dense)


def test_dataset_splits_are_disjoint_and_deterministic():
    """Scene seeds never repeat across splits; an item depends only on (split, index, seed)."""
    seeds = {split: {scene_seed(split, i) for i in range(500)} for split in ('train', 'val',
                                                                              'test')}
    assert all(len(v) == 500 for v in seeds.values())
    assert not seeds['train'] & seeds['val'] and not seeds['train'] & seeds['test']
    assert not seeds['val'] & seeds['test']
    train = SyntheticDataset('train', 3, H, W)
    val = SyntheticDataset('val', 3, H, W)
    assert len(train) == 3
    np.testing.assert_array_equal(train[1].image, SyntheticDataset('train', 3, H, W)[1].image)
    assert not np.array_equal(train[0].image, val[0].image)
    assert not np.array_equal(train[0].image, SyntheticDataset('train', 3, H, W, seed=1)[0].image)
    with pytest.raises(IndexError):
        train[3]
    with pytest.raises(ValueError, match='multiple of 32'):
        SyntheticDataset('train', 3, 100, W)
    with pytest.raises(ValueError, match='split'):
        SyntheticDataset('holdout', 3, H, W)


def test_radar_fields_are_configurable():
    """Compensated velocities can replace the raw ones; unknown names are rejected."""
    s = render_scene(2, out_height=H, out_width=W, radar_fields=('rcs', 'vx_comp', 'vy_comp'))
    assert s.radar_channels == ('depth', 'rcs', 'vx_comp', 'vy_comp')
    comp = s.meta['radar_all_fields']
    np.testing.assert_array_equal(s.meta['radar_features'][:, 2], comp['vy_comp'])
    with pytest.raises(ValueError, match='unknown synthetic radar fields'):
        render_scene(2, out_height=H, out_width=W, radar_fields=('rcs', 'doppler'))


def test_crop_updates_K_and_matches_reprojection(samples):
    """A crop shifts the principal point; the cropped radar map is what radar_map gives for it."""
    s = samples[1]
    c = crop(s, 20, 40, 64, 128)
    np.testing.assert_allclose(c.K[:2, 2], s.K[:2, 2] - [40, 20])
    m = s.meta
    expected = geometry.radar_map(m['radar_points'], m['radar_features'], m['T_cam_from_radar'],
                                  c.K, 128, 64)
    np.testing.assert_array_equal(c.radar, expected)
    np.testing.assert_array_equal(c.gt_dense, s.gt_dense[20:84, 40:168])
    with pytest.raises(ValueError, match='does not fit'):
        crop(s, 100, 0, 64, 128)


def test_flip_mirrors_K_and_negates_lateral_velocity(samples):
    """Flip: cx' = W - 1 - cx, vy -> -vy; equal to radar_map of the mirrored world."""
    s = samples[2]
    f = hflip(s)
    assert f.K[0, 2] == pytest.approx(W - 1 - s.K[0, 2])
    np.testing.assert_array_equal(f.radar[0], s.radar[0][:, ::-1])  # depth mirrored
    np.testing.assert_array_equal(f.radar[2], s.radar[2][:, ::-1])  # vx kept
    np.testing.assert_array_equal(f.radar[3], -s.radar[3][:, ::-1])  # vy negated
    m = s.meta
    mirrored = m['radar_points'] * np.array([1, -1, 1], np.float32)  # radar y (left) -> -y
    features = m['radar_features'] * np.array([1, 1, -1], np.float32)
    expected = geometry.radar_map(mirrored, features, m['T_cam_from_radar'], f.K, W, H)
    np.testing.assert_allclose(f.radar, expected)
    back = hflip(f)
    np.testing.assert_array_equal(back.radar, s.radar)
    np.testing.assert_array_equal(back.image, s.image)
    np.testing.assert_allclose(back.K, s.K)


def test_augment_is_reproducible_and_respects_switches(samples):
    """Same rng state -> same result; switches off -> only the crop happens."""
    s = samples[3]
    a = augment(s, np.random.default_rng(5), crop_hw=(96, 192))
    b = augment(s, np.random.default_rng(5), crop_hw=(96, 192))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.radar, b.radar)
    assert a.image.shape == (96, 192, 3) and a.radar.shape == (4, 96, 192)
    plain = augment(s, np.random.default_rng(5), flip=False, color_jitter=False)
    np.testing.assert_array_equal(plain.image, s.image)
    flips = [augment(s, np.random.default_rng(i), color_jitter=False).K[0, 2] != s.K[0, 2]
             for i in range(40)]
    assert 5 < sum(flips) < 35  # about half
    with pytest.raises(ValueError, match='larger'):
        augment(s, np.random.default_rng(0), crop_hw=(H + 32, W))


def test_color_jitter_matches_formula():
    """((I/255)^gamma * brightness * colour) clipped, per channel."""
    image = np.array([[[0, 128, 255]]], dtype=np.uint8)
    out = jitter_colors(image, 1.1, 0.95, np.array([1.0, 1.05, 0.9]))
    expected = np.clip((image / 255.0) ** 1.1 * 0.95 * np.array([1.0, 1.05, 0.9]), 0, 1) * 255
    np.testing.assert_allclose(out.astype(float), expected, atol=0.51)


def test_cache_round_trip(tmp_path, samples):
    """Samples survive save/load, meta arrays included; a truncated file is a clear error."""
    path = save_sample(tmp_path / 'a.npz', samples[0])
    back = load_sample(path)
    for name in ('image', 'radar', 'gt_sparse', 'gt_dense', 'K'):
        np.testing.assert_array_equal(getattr(back, name), getattr(samples[0], name))
    np.testing.assert_array_equal(back.meta['radar_points'], samples[0].meta['radar_points'])
    np.testing.assert_array_equal(back.meta['radar_all_fields']['vy'],
                                  samples[0].meta['radar_all_fields']['vy'])
    assert back.meta['seed'] == 0 and back.radar_channels == samples[0].radar_channels
    (tmp_path / 'bad.npz').write_bytes(path.read_bytes()[:100])
    from xdrcdepth_ros.core.errors import DatasetError
    with pytest.raises(DatasetError, match='cannot read cached sample'):
        load_sample(tmp_path / 'bad.npz')


def test_dataset_cache_dir_reuses_rendered_samples(tmp_path):
    """With cache_dir the first access writes an npz that later accesses read back."""
    dataset = SyntheticDataset('val', 2, H, W, cache_dir=tmp_path)
    first = dataset[1]
    files = list(tmp_path.glob('*.npz'))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    np.testing.assert_array_equal(dataset[1].radar, first.radar)
    paths = dataset.prepare(tmp_path)
    assert len(paths) == 2 and all(p.is_file() for p in paths)
    assert files[0].stat().st_mtime_ns == mtime  # read back, not re-rendered


def test_torch_dataset_tensors_and_epoch_seeding(samples):
    """to_tensors layout; augmentation is fixed per (epoch, index) and changes with the epoch."""
    torch = pytest.importorskip('torch')
    from xdrcdepth_ros.data.torch_utils import to_tensors, TorchDataset

    t = to_tensors(samples[0])
    assert t['image'].shape == (3, H, W) and t['image'].dtype == torch.float32
    assert 0.0 <= float(t['image'].min()) and float(t['image'].max()) <= 1.0
    assert t['radar'].shape == (4, H, W)
    assert t['gt_sparse'].shape == (1, H, W) and t['gt_dense'].shape == (1, H, W)
    assert torch.equal(t['gt_dense'][0], torch.from_numpy(samples[0].gt_dense))
    dataset = TorchDataset(samples, crop_hw=(64, 128), seed=3)
    a = dataset[1]['image']
    assert torch.equal(a, dataset[1]['image'])
    outputs = []
    for epoch in range(4):
        dataset.set_epoch(epoch)
        outputs.append(dataset[1]['image'])
    assert any(not torch.equal(outputs[0], o) for o in outputs[1:])
    plain = TorchDataset(samples, augment=False)[0]
    assert torch.equal(plain['image'], t['image'])


def test_zoom_crop_keeps_sparse_depths_exact_and_enlarges_the_view(samples):
    """Scale augmentation: a 64x128 window enlarged to 80x160 keeps every radar and LiDAR
    measurement's value (no interpolation), loses none, and the image is the window resized."""
    from xdrcdepth_ros.data.augmentation import zoom_crop

    s = samples[1]
    image = s.image.transpose(2, 0, 1).astype(np.float32) / 255.0
    window = (40, 50, 64, 128)
    img, radar, sparse, dense = zoom_crop(image, s.radar, s.gt_sparse[None], s.gt_dense[None],
                                          window, (80, 160))
    assert img.shape == (3, 80, 160) and radar.shape == (4, 80, 160)
    assert sparse.shape == dense.shape == (1, 80, 160)
    src_sparse = s.gt_sparse[40:104, 50:178]
    assert (sparse > 0).sum() == (src_sparse > 0).sum()
    np.testing.assert_array_equal(np.sort(sparse[sparse > 0]), np.sort(src_sparse[src_sparse > 0]))
    src_radar = s.radar[:, 40:104, 50:178]
    assert (radar[0] > 0).sum() == (src_radar[0] > 0).sum() > 0
    np.testing.assert_array_equal(np.sort(radar[1][radar[0] > 0]),
                                  np.sort(src_radar[1][src_radar[0] > 0]))
    # The window's centre pixel lands at the output's centre (the view is enlarged, not moved).
    assert abs(img[:, 40, 80].mean() - image[:, 72, 114].mean()) < 0.15
    with pytest.raises(ValueError, match='only enlarges'):
        zoom_crop(image, s.radar, s.gt_sparse[None], s.gt_dense[None], window, (32, 64))


def test_zoomed_training_crops_have_the_crop_size():
    """CropDataset with zoom_max > 1 still yields crop-sized tensors, and differs from plain
    crops for the same seed (the zoom is applied)."""
    from xdrcdepth_ros.train.batches import CropDataset

    base = [render_scene(seed, out_height=H, out_width=W) for seed in range(2)]
    zoomed = CropDataset(base, (64, 128), zoom_max=1.5)[(0, 12345)]
    plain = CropDataset(base, (64, 128))[(0, 12345)]
    assert zoomed['image'].shape == plain['image'].shape == (3, 64, 128)
    assert zoomed['radar'].shape == (4, 64, 128) and zoomed['gt_sparse'].shape == (1, 64, 128)
    assert not np.array_equal(zoomed['image'].numpy(), plain['image'].numpy())
    with pytest.raises(ValueError, match='zoom_max must be >= 1'):
        CropDataset(base, (64, 128), zoom_max=0.5)
