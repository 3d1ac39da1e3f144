"""geometry.py against an independent nuscenes-devkit reference on the 8 bundled real keyframes."""
from __future__ import annotations

import numpy as np
import pytest

from xdrcdepth_ros.core import geometry
from xdrcdepth_ros.core.nuscenes_io import radar_xyz, read_lidar_bin, read_pcd

devkit = pytest.importorskip('nuscenes.utils.data_classes', reason='nuscenes-devkit not installed')
geometry_utils = pytest.importorskip('nuscenes.utils.geometry_utils')
pyquaternion = pytest.importorskip('pyquaternion')

WIDTH, HEIGHT = 1600, 900


def devkit_cam_from_sensor(keyframe, channel: str) -> np.ndarray:
    """camera ← sensor with the devkit's transform_matrix, composed as the devkit tutorial does."""
    def matrix(record, inverse=False):
        return geometry_utils.transform_matrix(
            record['translation'], pyquaternion.Quaternion(record['rotation']), inverse=inverse)

    sensor = keyframe.sensors[channel]
    cam = keyframe.camera
    return (matrix(cam.calibrated_sensor, inverse=True) @ matrix(cam.ego_pose, inverse=True)
            @ matrix(sensor.ego_pose) @ matrix(sensor.calibrated_sensor))


def devkit_projection(points_3xn: np.ndarray, transform: np.ndarray, K: np.ndarray):
    """Reference projection with devkit's view_points and our documented keep rule."""
    cam = transform[:3, :3] @ points_3xn + transform[:3, 3:4]
    uv = geometry_utils.view_points(cam, K, normalize=True)[:2]
    depth = cam[2]
    keep = ((depth > 1.0) & (uv[0] >= -0.5) & (uv[0] < WIDTH - 0.5)
            & (uv[1] >= -0.5) & (uv[1] < HEIGHT - 0.5))
    return uv[:, keep].T, depth[keep], np.flatnonzero(keep)


def load_radar_devkit(path):
    cloud_cls = devkit.RadarPointCloud
    # Per-call filter lists: the class-level defaults are mutable shared state.
    return cloud_cls.from_file(str(path), invalid_states=list(range(18)),
                               dynprop_states=list(range(8)), ambig_states=list(range(5)))


@pytest.mark.parametrize('channel', ['RADAR_FRONT', 'LIDAR_TOP'])
def test_projection_matches_devkit_on_every_bundled_frame(keyframes, channel):
    """Same kept points, pixels within 1e-3 px and depths within 1e-4 m as nuscenes-devkit."""
    assert len(keyframes) == 8
    for keyframe in keyframes:
        path = keyframe.sensors[channel].path
        if channel == 'LIDAR_TOP':
            reference_points = devkit.LidarPointCloud.from_file(str(path)).points[:3]
            ours = read_lidar_bin(path)[:, :3]
        else:
            reference_points = load_radar_devkit(path).points[:3]
            ours = radar_xyz(read_pcd(path))
        np.testing.assert_array_equal(ours.T.astype(np.float32), reference_points.astype(np.float32))
        ref_uv, ref_depth, ref_index = devkit_projection(
            reference_points.astype(np.float64), devkit_cam_from_sensor(keyframe, channel), keyframe.K)
        uv, depth, index = geometry.project_points(
            ours, keyframe.T_cam_from(channel), keyframe.K, WIDTH, HEIGHT)
        assert len(index) > 40
        np.testing.assert_array_equal(index, ref_index)
        np.testing.assert_allclose(uv, ref_uv, atol=1e-3, rtol=0)
        np.testing.assert_allclose(depth, ref_depth, atol=1e-4, rtol=0)


def test_transform_chain_matches_devkit(keyframes):
    """The ego-motion-compensated chain equals the devkit composition to float precision."""
    for keyframe in keyframes:
        for channel in ('RADAR_FRONT', 'LIDAR_TOP'):
            np.testing.assert_allclose(keyframe.T_cam_from(channel),
                                       devkit_cam_from_sensor(keyframe, channel), atol=1e-9)


def test_radar_map_has_one_pixel_per_distinct_projected_pixel(keyframes):
    """Exactly one non-zero pixel per distinct projected pixel; its values are the nearest point's."""
    for keyframe in keyframes:
        radar = keyframe.read_radar()
        xyz = radar_xyz(radar)
        features = np.stack([radar['rcs'], radar['vx'], radar['vy']], axis=1)
        transform = keyframe.T_cam_from('RADAR_FRONT')
        radar_map = geometry.radar_map(xyz, features, transform, keyframe.K, WIDTH, HEIGHT)
        assert radar_map.shape == (4, HEIGHT, WIDTH) and radar_map.dtype == np.float32
        uv, depth, index = geometry.project_points(xyz, transform, keyframe.K, WIDTH, HEIGHT)
        cols, rows = geometry.pixel_indices(uv)
        pixels = set(zip(rows.tolist(), cols.tolist()))
        occupied = np.argwhere(radar_map[0] > 0)
        assert len(occupied) == len(pixels)
        for row, col in pixels:
            at_pixel = np.flatnonzero((rows == row) & (cols == col))
            winner = at_pixel[np.argmin(depth[at_pixel])]
            expected = [depth[winner], *features[index[winner]]]
            np.testing.assert_allclose(radar_map[:, row, col], np.float32(expected), rtol=0, atol=0)


def test_nearest_point_wins_a_shared_pixel():
    """Two points on one ray: the nearer one's features are written, whatever the input order."""
    K = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    points = np.array([[0.0, 0.0, 20.0], [0.0, 0.0, 10.0], [0.0, 0.0, 30.0]])
    features = np.array([[1.0], [2.0], [3.0]])
    radar_map = geometry.radar_map(points, features, np.eye(4), K, 100, 80)
    assert radar_map[0, 40, 50] == 10.0 and radar_map[1, 40, 50] == 2.0
    assert np.count_nonzero(radar_map[0]) == 1


def test_lidar_depth_map_keeps_nearest_return(keyframes):
    keyframe = keyframes[0]
    lidar = keyframe.read_lidar()
    transform = keyframe.T_cam_from('LIDAR_TOP')
    depth_map = geometry.lidar_depth_map(lidar, transform, keyframe.K, WIDTH, HEIGHT)
    uv, depth, _ = geometry.project_points(lidar, transform, keyframe.K, WIDTH, HEIGHT)
    cols, rows = geometry.pixel_indices(uv)
    expected = np.full((HEIGHT, WIDTH), np.inf)
    np.minimum.at(expected, (rows, cols), depth)
    expected[np.isinf(expected)] = 0
    np.testing.assert_array_equal(depth_map, expected.astype(np.float32))


def test_non_finite_points_are_dropped_and_empty_cloud_gives_zero_map():
    K = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    points = np.array([[np.nan, 0, 10], [0, np.inf, 10], [0.1, 0.1, 10]])
    uv, depth, index = geometry.project_points(points, np.eye(4), K, 100, 80)
    assert index.tolist() == [2]
    empty = geometry.radar_map(np.zeros((0, 3)), np.zeros((0, 3)), np.eye(4), K, 100, 80)
    assert empty.shape == (4, 80, 100) and not empty.any()


@pytest.mark.parametrize(('call', 'match'), [
    (lambda: geometry.project_points(np.zeros((5, 2)), np.eye(4), np.eye(3), 10, 10), r'\(N, 3\)'),
    (lambda: geometry.project_points(np.zeros((5, 3)), np.eye(3), np.eye(3), 10, 10), r'\(4, 4\)'),
    (lambda: geometry.project_points(np.zeros((5, 3)), np.full((4, 4), np.nan), np.eye(3), 10, 10),
     'non-finite'),
    (lambda: geometry.project_points(np.zeros((5, 3)), np.eye(4), np.eye(2), 10, 10), '3x3'),
    (lambda: geometry.check_model_size(350, 704), 'multiple of 32'),
    (lambda: geometry.InputTransform.fit(1600, 900, 700, 352), 'multiple of 32'),
    (lambda: geometry.transform_from_wxyz([0, 0, 0], [0, 0, 0, 0]), 'non-zero'),
    (lambda: geometry.transform_from_xyzw([0, 0], [0, 0, 0, 1]), 'translation'),
    (lambda: geometry.radar_map(np.zeros((3, 3)), np.zeros((2, 3)), np.eye(4), np.eye(3), 9, 9),
     'features'),
])
def test_bad_input_raises_value_error_naming_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_ros_and_nuscenes_quaternion_orders_agree():
    rng = np.random.default_rng(0)
    for _ in range(20):
        wxyz = rng.normal(size=4)
        translation = rng.normal(size=3)
        a = geometry.transform_from_wxyz(translation, wxyz)
        b = geometry.transform_from_xyzw(translation, np.roll(wxyz, -1))
        np.testing.assert_allclose(a, b)
        np.testing.assert_allclose(a[:3, :3] @ a[:3, :3].T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(geometry.invert_transform(a) @ a, np.eye(4), atol=1e-12)


def test_input_transform_keeps_projection_consistent(keyframes):
    """Projecting with the updated K equals scaling + cropping the full-size pixel coordinates."""
    keyframe = keyframes[4]
    transform = geometry.InputTransform.fit(WIDTH, HEIGHT, 704, 352)
    assert transform.scaled_size == (704, 396) and transform.crop_y == 44 and transform.crop_x == 0
    K_model = transform.apply_to_K(keyframe.K)
    xyz = radar_xyz(keyframe.read_radar())
    T = keyframe.T_cam_from('RADAR_FRONT')
    uv_full, _, index_full = geometry.project_points(xyz, T, keyframe.K, WIDTH, HEIGHT)
    uv_model, _, index_model = geometry.project_points(xyz, T, K_model, 704, 352)
    expected = transform.scale * (uv_full + 0.5) - 0.5 - [transform.crop_x, transform.crop_y]
    inside = np.isin(index_full, index_model)
    np.testing.assert_allclose(uv_model, expected[inside], atol=1e-9)
    image = keyframe.read_image()
    assert transform.apply_to_image(image).shape == (352, 704, 3)
    back = transform.depth_to_source(np.ones((352, 704), np.float32))
    assert back.shape == (HEIGHT, WIDTH) and np.isnan(back[0, 0]) and back[-1, 0] == 1.0


@pytest.mark.parametrize(('width', 'height'), [(704, 352), (352, 192), (1600, 896)])
def test_resized_image_agrees_with_updated_K(width, height):
    """A blob drawn at full-size pixel (u, v) lands where the updated K projects it (< 0.05 px)."""
    transform = geometry.InputTransform.fit(WIDTH, HEIGHT, width, height)
    u0, v0 = 811.3, 602.7
    cols, rows = np.meshgrid(np.arange(WIDTH), np.arange(HEIGHT))
    blob = np.exp(-((cols - u0) ** 2 + (rows - v0) ** 2) / (2 * 12.0 ** 2))
    resized = transform.apply_to_image((blob * 255).astype(np.float32))
    weights = np.clip(resized - 0.2 * resized.max(), 0, None)
    ys, xs = np.indices(weights.shape)
    centroid = np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()
    K = np.array([[1000.0, 0, 800], [0, 1000.0, 450], [0, 0, 1]])
    K_model = transform.apply_to_K(K)
    ray = np.linalg.solve(K, [u0, v0, 1.0])
    expected = (K_model @ ray)[:2] / (K_model @ ray)[2]
    np.testing.assert_allclose(centroid, expected, atol=0.05)
