"""pipeline.py on the bundled real nuScenes frames with a real exported model through ORT."""
from __future__ import annotations

import numpy as np
import pytest

from xdrcdepth_ros.core.engine import Engine
from xdrcdepth_ros.core.frame import Frame, RadarSweep
from xdrcdepth_ros.core.geometry import InputTransform, radar_map
from xdrcdepth_ros.core.nuscenes_io import radar_xyz
from xdrcdepth_ros.core.pipeline import build_radar_map, DepthPipeline, OutputSize, STAGES

RADARS = ('RADAR_FRONT', 'RADAR_FRONT_LEFT', 'RADAR_FRONT_RIGHT')


def _sweep(keyframe, channel: str) -> RadarSweep:
    cloud = keyframe.read_radar(channel)
    features = np.stack([cloud['rcs'], cloud['vx_comp'], cloud['vy_comp']], axis=1)
    return RadarSweep(radar_xyz(cloud).astype(np.float32), features.astype(np.float32),
                      keyframe.T_cam_from(channel), keyframe.sensors[channel].timestamp_us * 1000,
                      channel.lower())


def _frame(keyframe, radars=RADARS) -> Frame:
    return Frame(keyframe.read_image(), keyframe.K, tuple(_sweep(keyframe, c) for c in radars),
                 keyframe.camera.timestamp_us * 1000, 'cam_front')


@pytest.fixture(scope='module')
def engine(tiny_model):
    with Engine(tiny_model, available_providers=['CPUExecutionProvider']) as loaded:
        yield loaded


@pytest.fixture(scope='module')
def frame(keyframes):
    return _frame(keyframes[0])


def test_single_sweep_radar_map_is_bit_identical_to_geometry(keyframes):
    """Training datasets call geometry.radar_map directly; the node must feed the same tensor."""
    keyframe = keyframes[1]
    K_model = InputTransform.fit(1600, 900, 704, 352).apply_to_K(keyframe.K)
    sweep = _sweep(keyframe, 'RADAR_FRONT')
    ours = build_radar_map(_frame(keyframe, ('RADAR_FRONT',)), K_model, 704, 352)
    reference = radar_map(sweep.points, sweep.features, sweep.T_cam_from_radar, K_model, 704, 352)
    assert np.count_nonzero(reference[0]) > 10
    np.testing.assert_array_equal(ours, reference)


def test_multi_sweep_map_keeps_the_nearest_point_across_sweeps(keyframes):
    """Two radars hitting one pixel: the nearer return wins whatever the sweep order."""
    K = np.array([[100.0, 0, 95.5], [0, 100.0, 47.5], [0, 0, 1]])
    near = RadarSweep(np.array([[0.0, 0.0, 10.0]], np.float32), np.array([[1.0, 2.0, 3.0]],
                      np.float32), np.eye(4), frame_id='near')
    # Same camera ray, 20 m away, seen by a radar mounted 5 m behind the camera.
    mount = np.eye(4)
    mount[2, 3] = -5.0
    far = RadarSweep(np.array([[0.0, 0.0, 25.0]], np.float32), np.array([[-1.0, -2.0, -3.0]],
                     np.float32), mount, frame_id='far')
    image = np.zeros((96, 192, 3), np.uint8)
    for sweeps in ((near, far), (far, near)):
        out = build_radar_map(Frame(image, K, sweeps), K, 192, 96)
        assert np.count_nonzero(out[0]) == 1
        np.testing.assert_array_equal(out[:, 48, 96], [10.0, 1.0, 2.0, 3.0])


def test_frame_without_radar_gives_an_all_zero_map():
    K = np.array([[100.0, 0, 95.5], [0, 100.0, 47.5], [0, 0, 1]])
    out = build_radar_map(Frame(np.zeros((96, 192, 3), np.uint8), K), K, 192, 96)
    assert out.shape == (4, 96, 192) and out.dtype == np.float32 and not out.any()


def test_sweep_with_wrong_feature_count_names_the_sweep():
    K = np.array([[100.0, 0, 95.5], [0, 100.0, 47.5], [0, 0, 1]])
    sweep = RadarSweep(np.zeros((5, 3), np.float32), np.zeros((5, 2), np.float32), np.eye(4),
                       frame_id='radar_left')
    with pytest.raises(ValueError, match=r"radar sweep radar_left: features must be \(5, 3\)"):
        build_radar_map(Frame(np.zeros((96, 192, 3), np.uint8), K, (sweep,)), K, 192, 96)


def test_run_feeds_the_engine_what_the_result_reports(engine, frame):
    """depth is exactly the engine's output on result.image/result.radar_map, masked."""
    pipeline = DepthPipeline(engine)
    result = pipeline.run(frame)
    assert result.image.shape == (96, 192, 3) and result.radar_map.shape == (4, 96, 192)
    assert np.count_nonzero(result.radar_map[0]) > 0
    raw_depth, raw_saliency = engine.run(result.image, result.radar_map)
    valid = np.isfinite(result.depth)
    np.testing.assert_array_equal(result.depth[valid], raw_depth[valid])
    np.testing.assert_array_equal(result.saliency, raw_saliency)
    transform = InputTransform.fit(1600, 900, 192, 96)
    np.testing.assert_allclose(result.K, transform.apply_to_K(frame.K))
    np.testing.assert_array_equal(result.image, transform.apply_to_image(frame.image))
    assert result.stamp_ns == frame.stamp_ns and result.frame_id == 'cam_front'
    assert tuple(result.timings_ms) == STAGES
    assert all(value >= 0 for value in result.timings_ms.values())


def test_postprocess_marks_out_of_range_depth_invalid(engine):
    """REP 118: NaN = invalid. Depth <= min_depth, > max_depth and non-finite become NaN."""
    pipeline = DepthPipeline(engine, min_depth=0.5)
    max_depth = engine.metadata.max_depth
    depth = np.array([[0.0, 0.5, 0.6, max_depth], [max_depth + 1, np.nan, np.inf, 30.0]],
                     np.float32)
    out, _, _ = pipeline.postprocess(depth, None, pipeline.transform_for(1600, 900), np.eye(3),
                                     np.eye(3))
    expected = np.array([[np.nan, np.nan, 0.6, max_depth], [np.nan, np.nan, np.nan, 30.0]],
                        np.float32)
    np.testing.assert_array_equal(out, expected)


def test_camera_output_size_maps_back_with_the_camera_k(engine, frame):
    model_result = DepthPipeline(engine).run(frame)
    result = DepthPipeline(engine, output_size=OutputSize.CAMERA).run(frame)
    assert result.depth.shape == (900, 1600) and result.saliency.shape == (900, 1600)
    np.testing.assert_array_equal(result.K, frame.K)
    transform = InputTransform.fit(1600, 900, 192, 96)
    np.testing.assert_array_equal(result.depth, transform.depth_to_source(model_result.depth))
    # The bottom crop drops the top rows of the camera image: no depth there.
    assert np.all(np.isnan(result.depth[:transform.crop_y]))
    assert np.isfinite(result.depth[-1]).all()


def test_transform_is_cached_per_camera_size(engine):
    pipeline = DepthPipeline(engine)
    assert pipeline.transform_for(1600, 900) is pipeline.transform_for(1600, 900)
    assert pipeline.transform_for(1280, 720) is not pipeline.transform_for(1600, 900)


def test_every_bundled_frame_runs(engine, keyframes):
    """All 8 real frames (two scenes, varied radar returns) go through without error."""
    pipeline = DepthPipeline(engine)
    for keyframe in keyframes:
        result = pipeline.run(_frame(keyframe))
        assert np.isfinite(result.depth).any()


@pytest.mark.parametrize('image, match', [
    (np.zeros((900, 1600, 3), np.float32), 'uint8'),
    (np.zeros((900, 1600), np.uint8), r'\(H, W, 3\)'),
])
def test_bad_frame_image_is_a_clear_error(engine, image, match):
    with pytest.raises(ValueError, match=match):
        DepthPipeline(engine).run(Frame(image, np.eye(3)))


@pytest.mark.parametrize('kwargs, match', [
    ({'output_size': 'full'}, 'full'),
    ({'vertical_crop': 'middle'}, 'vertical_crop'),
    ({'min_depth': 1000.0}, 'min_depth'),
])
def test_bad_pipeline_options_are_refused(engine, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DepthPipeline(engine, **kwargs)


class _StatedCrop:
    """An engine lookalike whose metadata states a vertical crop (no model needed to crop)."""

    def __init__(self, engine, vertical_crop: str) -> None:
        from dataclasses import replace

        self.metadata = replace(engine.metadata, input_height=896, input_width=1600,
                                vertical_crop=vertical_crop)


@pytest.mark.parametrize('stated, crop_y', [('bottom', 4), ('top', 0), ('center', 2)])
def test_the_crop_the_model_metadata_states_is_the_crop_applied(engine, stated, crop_y):
    """The official nuScenes protocol crops 900 rows to 896 by dropping the top 4: a model
    whose metadata says so is fed that way unless the caller asks for another crop."""
    assert DepthPipeline(_StatedCrop(engine, stated)).transform_for(1600, 900).crop_y == crop_y
    overridden = DepthPipeline(_StatedCrop(engine, stated), vertical_crop='top')
    assert overridden.transform_for(1600, 900).crop_y == 0
