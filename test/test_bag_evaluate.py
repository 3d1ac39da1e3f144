"""Bag evaluation against LiDAR on the bundled frames, checked against evaluate.py directly."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from xdrcdepth_ros.core import conversions
from xdrcdepth_ros.bag.convert import convert_nuscenes
from xdrcdepth_ros.bag.evaluate import evaluate_bag
from xdrcdepth_ros.bag.io import BagReader, BagWriter
from xdrcdepth_ros.bag.messages import header
from xdrcdepth_ros.core.errors import BagError
from xdrcdepth_ros.core.evaluate import compute_metrics, DEFAULT_CAPS, MetricAccumulator
from xdrcdepth_ros.core.geometry import InputTransform, lidar_depth_map

WIDTH, HEIGHT = 192, 96


@pytest.fixture(scope='module')
def input_bag(nuscenes_root, tmp_path_factory):
    """The 8 bundled keyframes as a bag (LiDAR, TF, images, radars)."""
    out = tmp_path_factory.mktemp('eval_in') / 'nusc'
    convert_nuscenes(nuscenes_root, out, progress=False)
    return out


def _model_K(keyframe) -> np.ndarray:
    return InputTransform.fit(1600, 900, WIDTH, HEIGHT).apply_to_K(keyframe.K)


def _reference_gt(keyframe) -> np.ndarray:
    """LiDAR depth in the model crop via nuScenes' own sensor → ego → global → camera chain."""
    return lidar_depth_map(keyframe.read_lidar()[:, :3], keyframe.T_cam_from('LIDAR_TOP'),
                           _model_K(keyframe), WIDTH, HEIGHT)


def _depth_bag(input_bag: Path, out: Path, keyframes, predict, *, lidar: bool = True) -> Path:
    """``input_bag`` plus /xdrcdepth/depth = predict(reference GT) and its camera_info."""
    with BagReader(input_bag) as reader, BagWriter(out) as writer:
        for message in reader.messages():
            if lidar or message.topic != '/LIDAR_TOP':
                writer.write_raw(message.topic, message.msgtype, message.stamp_ns, message.raw,
                                 qos=message.qos)
        types = writer.store.types
        for keyframe in keyframes:
            stamp = keyframe.camera.timestamp_us * 1000
            head = header(writer.store, stamp, 'cam_front_optical')
            depth = predict(_reference_gt(keyframe)).astype(np.float32)
            writer.write('/xdrcdepth/depth', stamp, conversions.make_image(
                types['sensor_msgs/msg/Image'], head, depth, '32FC1'))
            writer.write('/xdrcdepth/camera_info', stamp, conversions.make_camera_info(
                types['sensor_msgs/msg/CameraInfo'], head,
                conversions.CameraModel.from_K(_model_K(keyframe), WIDTH, HEIGHT),
                roi_cls=types['sensor_msgs/msg/RegionOfInterest']))
    return out


def _ramp(gt: np.ndarray) -> np.ndarray:
    """A prediction unrelated to the GT: depth growing towards the horizon, NaN in a corner."""
    rows = np.arange(gt.shape[0], dtype=np.float32)[:, None]
    depth = np.broadcast_to(90.0 - rows * 0.9, gt.shape).copy()
    depth[:8, :8] = np.nan
    return depth


def test_depth_equal_to_lidar_scores_zero_error(input_bag, keyframes, tmp_path):
    """Depth that is the LiDAR itself: zero error at every cap, so the TF chain read from the
    bag (/tf_static + /tf at both stamps) equals nuScenes' motion-compensated projection."""
    bag = _depth_bag(input_bag, tmp_path / 'perfect', keyframes,
                     lambda gt: np.where(gt > 0, gt, np.nan))
    result = evaluate_bag(bag, progress=False)
    assert len(result.frames) == len(keyframes)
    for frame in result.frames:
        assert frame.ego_motion_compensated
        for cap in DEFAULT_CAPS:
            assert frame.metrics[cap]['mae_m'] == pytest.approx(0.0, abs=1e-5)
            assert frame.metrics[cap]['delta1'] == 1.0
    assert result.mean[80.0]['n_images'] == len(keyframes)


def test_evaluate_agrees_with_evaluate_py_on_the_same_arrays(input_bag, keyframes, tmp_path):
    """Per-frame and mean metrics equal compute_metrics / MetricAccumulator on the arrays."""
    bag = _depth_bag(input_bag, tmp_path / 'ramp', keyframes, _ramp)
    result = evaluate_bag(bag, progress=False)
    accumulator = MetricAccumulator()
    by_stamp = {frame.stamp_ns: frame for frame in result.frames}
    for keyframe in keyframes:
        gt = _reference_gt(keyframe)
        pred = _ramp(gt)
        accumulator.add(pred, gt)
        frame = by_stamp[keyframe.camera.timestamp_us * 1000]
        assert frame.lidar_stamp_ns == keyframe.sensors['LIDAR_TOP'].timestamp_us * 1000
        for cap in DEFAULT_CAPS:
            expected = compute_metrics(pred, gt, max_depth=cap)
            got = frame.metrics[cap]
            assert got['n_pixels'] == expected['n_pixels'] > 1000
            for key, value in expected.items():
                assert got[key] == pytest.approx(value, rel=1e-9), (cap, key)
    for cap, expected in accumulator.summary().items():
        for key, value in expected.items():
            assert result.mean[cap][key] == pytest.approx(value, rel=1e-9), (cap, key)


def test_panels_one_png_per_frame(input_bag, keyframes, tmp_path):
    """image | radar | depth | saliency | error, five tiles in a row, one file per frame."""
    bag = _depth_bag(input_bag, tmp_path / 'ramp', keyframes[:4], _ramp)
    result = evaluate_bag(bag, panels_dir=tmp_path / 'panels', progress=False)
    panels = sorted((tmp_path / 'panels').glob('*.png'))
    assert len(panels) == 4 == len(result.frames)
    assert [Path(f.panel) for f in result.frames] == panels
    image = cv2.imread(str(panels[0]))
    assert image is not None and image.shape[1] == 5 * 384
    # The camera tile is a real picture (not black) and the radar tile differs from it: dots.
    tile_h = image.shape[0]
    camera, radar = image[30:tile_h, :384], image[30:tile_h, 384:768]
    assert camera.mean() > 20
    assert np.abs(camera.astype(int) - radar.astype(int)).sum() > 0


def test_json_form_is_strict_json(input_bag, keyframes, tmp_path):
    """--json output parses without NaN extensions and names caps as strings."""
    bag = _depth_bag(input_bag, tmp_path / 'ramp', keyframes[:2], _ramp)
    data = json.loads(json.dumps(evaluate_bag(bag, progress=False).to_dict(), allow_nan=False))
    assert set(data['mean']) == {'50', '70', '80'}
    assert len(data['frames']) == 2 and data['frames'][0]['lidar_offset_ms'] > 0


def test_missing_lidar_or_depth_topic_is_named(input_bag, keyframes, tmp_path):
    """Evaluating needs LiDAR and depth: the error names the absent topic."""
    bag = _depth_bag(input_bag, tmp_path / 'nolidar', keyframes[:1], _ramp, lidar=False)
    with pytest.raises(BagError, match='LiDAR topic /LIDAR_TOP'):
        evaluate_bag(bag, progress=False)
    with pytest.raises(BagError, match='depth topic /xdrcdepth/depth'):
        evaluate_bag(input_bag, progress=False)
