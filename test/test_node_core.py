"""The node's ROS-free core on real nuScenes frames and real rosbags message classes.

The node and offline replay both run :mod:`xdrcdepth_ros.core.frame_step`; these tests drive it with
explicit receive times, so the CameraInfo hold and the skip rules are checked without DDS timing.
"""
from __future__ import annotations

import numpy as np
import pytest

from xdrcdepth_ros.core import conversions
from xdrcdepth_ros.bag.io import typestore
from xdrcdepth_ros.bag.messages import header
from xdrcdepth_ros.core.engine import ModelMetadata
from xdrcdepth_ros.core.frame_step import (FrameBuilder, NONFINITE_RADAR_POINTS,
                                           parameter_extrinsics, SkipReason)
from xdrcdepth_ros.core.outputs import MessageClasses, output_messages
from xdrcdepth_ros.core.config import NodeConfig
from xdrcdepth_ros.core.geometry import extrinsics_from_transform

WAIT_NS = 100_000_000
METADATA = ModelMetadata(model_name='xdrcdepth_tiny', input_height=96, input_width=192)


@pytest.fixture(scope='module')
def store():
    return typestore()


@pytest.fixture(scope='module')
def messages(keyframes, store):
    """Image (rgb8), CameraInfo and RADAR_FRONT PointCloud2 of the first keyframe, rosbags
    classes; the radar is stamped 10 ms after the image so it settles the image at once."""
    keyframe = keyframes[0]
    stamp = keyframe.camera.timestamp_us * 1000
    types = store.types
    image = keyframe.read_image()
    cloud = keyframe.read_radar('RADAR_FRONT')
    return {
        'stamp': stamp, 'K': np.asarray(keyframe.K), 'cloud': cloud,
        'image': conversions.make_image(types['sensor_msgs/msg/Image'],
                                        header(store, stamp, 'CAM_FRONT'), image, 'rgb8'),
        'info': conversions.make_camera_info(
            types['sensor_msgs/msg/CameraInfo'], header(store, stamp, 'CAM_FRONT'),
            conversions.CameraModel.from_K(keyframe.K, image.shape[1], image.shape[0]),
            roi_cls=types['sensor_msgs/msg/RegionOfInterest']),
        'radar': cloud_msg(store, cloud, stamp + 10_000_000),
        'extrinsics': extrinsics_from_transform(keyframe.T_cam_from('RADAR_FRONT')),
    }


def cloud_msg(store, cloud, stamp_ns):
    types = store.types
    return conversions.make_pointcloud2(types['sensor_msgs/msg/PointCloud2'],
                                        types['sensor_msgs/msg/PointField'],
                                        header(store, stamp_ns, 'RADAR_FRONT'), cloud)


def make_builder(messages, **values):
    reports: list[SkipReason] = []
    counts: dict[str, int] = {}
    config = NodeConfig.from_values({
        'extrinsics_source': 'parameters', 'radar_extrinsics': messages['extrinsics'],
        'sync_slop': 0.08, 'sync_wait_s': WAIT_NS / 1e9, **values})
    builder = FrameBuilder(config, METADATA, parameter_extrinsics(config),
                           report=lambda reason, message: reports.append(reason),
                           count=lambda key, amount: counts.update({key: amount}))
    return builder, reports, counts


def test_an_image_waits_for_a_camera_info_that_lands_after_it(messages):
    """ros2 bag play often delivers an image a moment before its CameraInfo: the image is held,
    not dropped, and goes out as soon as the CameraInfo arrives."""
    builder, reports, _ = make_builder(messages)
    assert builder.add_radar(0, messages['radar'], 0)
    assert builder.add_image(messages['image'], 0)
    assert builder.take(1_000_000) is None  # ready (radar settled), but no CameraInfo yet
    assert builder.add_camera_info(messages['info'])
    synced = builder.take(2_000_000)
    assert synced is not None and synced.stamp_ns == messages['stamp']
    built = builder.build(synced)
    assert reports == []
    assert built.frame.image.shape == (900, 1600, 3)
    np.testing.assert_allclose(built.frame.K, messages['K'])
    assert len(built.frame.radar) == 1 and len(built.frame.radar[0].points) > 0
    assert built.header.frame_id == 'CAM_FRONT' and built.camera is builder.camera


def test_without_camera_info_an_image_is_skipped_once_its_sync_wait_ends(messages):
    """The hold is bounded by sync_wait_s; then the frame is reported as no_camera_info."""
    builder, reports, _ = make_builder(messages)
    builder.add_image(messages['image'], 0)
    assert builder.take(WAIT_NS - 1) is None
    synced = builder.take(WAIT_NS)
    assert synced is not None
    assert builder.build(synced) is None
    assert reports == [SkipReason.NO_CAMERA_INFO]
    assert builder.take(2 * WAIT_NS) is None and builder.sync_stats()['pending_images'] == 0


def test_an_invalid_camera_info_is_reported_and_the_last_valid_one_kept(messages, store):
    builder, reports, _ = make_builder(messages)
    builder.add_camera_info(messages['info'])
    valid = builder.camera
    zero = conversions.make_camera_info(
        store.types['sensor_msgs/msg/CameraInfo'], header(store, 0, 'CAM_FRONT'),
        conversions.CameraModel.from_K(np.eye(3), 1600, 900),
        roi_cls=store.types['sensor_msgs/msg/RegionOfInterest'])
    zero.k[:] = 0.0
    assert not builder.add_camera_info(zero)
    assert reports == [SkipReason.BAD_CAMERA_INFO] and builder.camera is valid


@pytest.mark.parametrize('require_radar', [False, True])
def test_a_sweep_without_the_configured_fields_is_left_out(messages, store, require_radar):
    """Zeros in a channel the model was trained on would be silently wrong input: the sweep is
    not used (radar_unused_bad_cloud); the frame runs without it, or is skipped when
    require_radar is set."""
    builder, reports, _ = make_builder(messages, require_radar=require_radar)
    xyz = np.ascontiguousarray(messages['cloud'][['x', 'y', 'z']]).astype(
        [('x', '<f4'), ('y', '<f4'), ('z', '<f4')])
    builder.add_camera_info(messages['info'])
    builder.add_radar(0, cloud_msg(store, xyz, messages['stamp'] + 10_000_000), 0)
    builder.add_image(messages['image'], 0)
    built = builder.build(builder.take(0))
    if require_radar:
        assert built is None
        assert reports == [SkipReason.RADAR_BAD_CLOUD, SkipReason.NO_USABLE_RADAR]
    else:
        assert built.frame.radar == ()
        assert reports == [SkipReason.RADAR_BAD_CLOUD]


def test_non_finite_radar_points_are_counted_and_the_rest_used(messages, store):
    builder, reports, counts = make_builder(messages)
    cloud = messages['cloud'].copy()
    cloud['x'][:3] = np.nan
    builder.add_camera_info(messages['info'])
    builder.add_radar(0, cloud_msg(store, cloud, messages['stamp'] + 10_000_000), 0)
    builder.add_image(messages['image'], 0)
    built = builder.build(builder.take(0))
    assert reports == [] and counts == {NONFINITE_RADAR_POINTS: 3}
    assert len(built.frame.radar[0].points) == len(cloud) - 3


def test_reconfigure_keeps_the_sync_counters_of_the_replaced_assembler(messages):
    builder, _, _ = make_builder(messages)
    builder.add_image(messages['image'], 0)
    old = builder.assembler
    builder.reconfigure(NodeConfig.from_values({**vars(builder.config), 'sync_slop': 0.2}))
    assert builder.assembler is not old and builder.assembler.config.slop_ns == 200_000_000
    assert builder.sync_stats()['images_in'] == 1
    builder.reconfigure(NodeConfig.from_values({**vars(builder.config), 'publish_points': True}))
    assert builder.config.publish_points and builder.sync_stats()['images_in'] == 1


def test_output_messages_follow_the_configuration_and_serialize(messages, store, tiny_model):
    """depth + camera_info always (camera_info at the depth size), optional outputs only when
    enabled and wanted; the rosbags messages serialize (what replay writes)."""
    from xdrcdepth_ros.core.engine import Engine
    from xdrcdepth_ros.core.pipeline import DepthPipeline

    builder, _, _ = make_builder(messages)
    builder.add_camera_info(messages['info'])
    builder.add_radar(0, messages['radar'], 0)
    builder.add_image(messages['image'], 0)
    built = builder.build(builder.take(0))
    pipeline = DepthPipeline(Engine(tiny_model, providers=['cpu']))
    result = pipeline.run(built.frame)
    classes = MessageClasses.from_typestore(store)
    config = NodeConfig.from_values({**vars(builder.config), 'publish_points': True,
                                     'depth_encoding': '16UC1'})
    out = dict(output_messages(result, built.camera, built.header, config, classes,
                               pipeline.max_depth, wanted=lambda suffix: suffix != 'points'))
    assert list(out) == ['depth', 'camera_info', 'depth_color']
    depth, info = out['depth'], out['camera_info']
    assert (depth.encoding, depth.width, depth.height) == ('16UC1', 192, 96)
    assert (info.width, info.height) == (192, 96)
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), result.K)
    np.testing.assert_allclose(np.reshape(info.p, (3, 4))[:, :3], result.K)
    np.testing.assert_array_equal(conversions.image_to_array(depth),
                                  conversions.depth_to_image_array(result.depth, '16UC1'))
    types = {'depth': 'Image', 'camera_info': 'CameraInfo', 'depth_color': 'Image'}
    for suffix, msg in out.items():
        assert msg.header.stamp == built.header.stamp
        assert store.serialize_cdr(msg, f'sensor_msgs/msg/{types[suffix]}')
    quiet = NodeConfig.from_values({**vars(builder.config), 'publish_color': False})
    assert [s for s, _ in output_messages(result, built.camera, built.header, quiet, classes,
                                          pipeline.max_depth)] == ['depth', 'camera_info']


def test_compressed_outputs_and_organised_points_serialize_for_replay(messages, store,
                                                                     tiny_model):
    """With publish_compressed the rosbags flavour builds ~/depth/compressedDepth and
    ~/depth_color/compressed (what replay writes into its bag), and they serialize."""
    from xdrcdepth_ros.core.engine import Engine
    from xdrcdepth_ros.core.pipeline import DepthPipeline

    builder, _, _ = make_builder(messages)
    builder.add_camera_info(messages['info'])
    builder.add_image(messages['image'], 0)
    built = builder.build(builder.take(10**10))
    pipeline = DepthPipeline(Engine(tiny_model, providers=['cpu']))
    result = pipeline.run(built.frame)
    config = NodeConfig.from_values({**vars(builder.config), 'publish_compressed': True,
                                     'publish_points': True, 'points_organized': True,
                                     'points_stride': 1})
    out = dict(output_messages(result, built.camera, built.header, config,
                               MessageClasses.from_typestore(store), pipeline.max_depth))
    assert list(out) == ['depth', 'camera_info', 'depth/compressedDepth', 'depth_color',
                         'depth_color/compressed', 'points']
    assert out['depth/compressedDepth'].format == '32FC1; compressedDepth png'
    assert out['depth_color/compressed'].format == 'rgb8; jpeg compressed bgr8'
    assert (out['points'].height, out['points'].width) == result.depth.shape
    for suffix in ('depth/compressedDepth', 'depth_color/compressed'):
        assert store.serialize_cdr(out[suffix], 'sensor_msgs/msg/CompressedImage')
    assert store.serialize_cdr(out['points'], 'sensor_msgs/msg/PointCloud2')


def test_the_shared_core_imports_neither_rclpy_nor_torch():
    """Replay runs this code where no ROS is installed, and the node's core must stay light."""
    import subprocess
    import sys

    code = ('import sys\nimport xdrcdepth_ros.core.frame_step, xdrcdepth_ros.ros.stats\n'
            'print(sorted(m for m in ("torch", "rclpy", "sensor_msgs") if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == '[]'
