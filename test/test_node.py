"""The node for real: rclpy, Fast DDS on localhost, the bundled nuScenes frames, ONNX Runtime.

Every test starts the node in-process on its own rclpy context and talks to it over DDS through
a test node (see ``ros_helpers``); nothing is mocked. Waits are bounded by deadlines.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip('rclpy', reason='needs rclpy (pip install -e .[ros] or a ROS 2 install)')

from ros_helpers import (camera_info_msg, cloud_msg, compressed_msg, Harness,  # noqa: E402
                         image_msg, keyframe_stamp_ns, node_model, RADAR_FIELDS)

from xdrcdepth_ros import conversions  # noqa: E402
from xdrcdepth_ros.frame import Frame, RadarSweep  # noqa: E402
from xdrcdepth_ros.node_params import extrinsics_from_transform  # noqa: E402

pytestmark = pytest.mark.ros
__all__ = ['node_model']  # the fixture is used by name

TIMEOUT = 30.0
# nuScenes keyframe radar sweeps lag the camera by up to 66 ms in the bundled frames.
SLOP = 0.08


def node_params(model, extrinsics, **extra):
    """Parameter overrides for a node on the bundled frames (static extrinsics, CPU)."""
    from rclpy.parameter import Parameter

    values = {'model_path': str(model), 'providers': ['cpu'], 'extrinsics_source': 'parameters',
              'radar_extrinsics': list(extrinsics), 'sync_slop': SLOP, 'publish_color': False,
              **extra}
    return [Parameter(name, value=value) for name, value in values.items()]


@pytest.fixture(scope='module')
def frames(keyframes):
    """(image, K, radar cloud, image stamp, radar stamp, jpeg bytes) of the bundled keyframes."""
    return [(kf.read_image(), np.asarray(kf.K), kf.read_radar('RADAR_FRONT'),
             keyframe_stamp_ns(kf), keyframe_stamp_ns(kf, 'RADAR_FRONT'),
             kf.camera.path.read_bytes()) for kf in keyframes]


@pytest.fixture(scope='module')
def extrinsics(keyframes):
    """camera <- RADAR_FRONT of the first keyframe, as radar_extrinsics (x y z qx qy qz qw)."""
    return extrinsics_from_transform(keyframes[0].T_cam_from('RADAR_FRONT'))


@pytest.fixture(scope='module')
def reference(node_model):
    """A separate Engine + DepthPipeline factory: what the node must reproduce."""
    from xdrcdepth_ros.engine import Engine
    from xdrcdepth_ros.pipeline import DepthPipeline

    engine = Engine(node_model, providers=['cpu'])
    return lambda output_size='model': DepthPipeline(engine, output_size=output_size)


def reference_frame(image, K, cloud, stamp_ns, radar_stamp_ns, extrinsics):
    """The Frame the node should assemble: radar via the same conversions, T from parameters."""
    from xdrcdepth_ros.geometry import transform_from_xyzw

    sweeps = ()
    if cloud is not None:
        points, features = conversions.radar_from_cloud(
            cloud, conversions.RadarFieldMap(RADAR_FIELDS))
        transform = transform_from_xyzw(extrinsics[:3], extrinsics[3:])
        sweeps = (RadarSweep(points, features, transform, radar_stamp_ns, 'RADAR_FRONT'),)
    return Frame(image=image, K=K, radar=sweeps, stamp_ns=stamp_ns, frame_id='CAM_FRONT')


def depth_array(msg):
    """Depth pixels of a received Image (32FC1 metres or 16UC1 millimetres)."""
    return np.array(conversions.image_to_array(msg))


class Rig:
    """The node under test plus the test publishers/subscribers on one harness."""

    def __init__(self, harness, node, *, compressed=False, outputs=('depth', 'camera_info')):
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

        self.harness, self.node = harness, node
        image_type = CompressedImage if compressed else Image
        image_topic = '/CAM_FRONT/image_raw' + ('/compressed' if compressed else '')
        self.image = harness.publisher(image_type, image_topic)
        self.info = harness.publisher(CameraInfo, '/CAM_FRONT/camera_info')
        self.radar = harness.publisher(PointCloud2, '/RADAR_FRONT')
        types = {'depth': Image, 'camera_info': CameraInfo, 'depth_color': Image,
                 'saliency_overlay': Image, 'points': PointCloud2}
        self.out = {name: harness.subscribe(types[name], f'/xdrcdepth/{name}')
                    for name in outputs}
        harness.wait_connected([self.image, self.info, self.radar])
        harness.wait_subscribed(node, [f'/xdrcdepth/{name}' for name in outputs])

    def counter(self, key):
        """A diagnostic counter of the node (0 when it has not been counted yet)."""
        return int(self.node.diagnostics()[2].get(key, 0))

    def wait_counter(self, key, before):
        """Wait until counter ``key`` exceeds ``before``."""
        self.harness.wait_until(lambda: self.counter(key) > before, TIMEOUT, f'{key} to grow')

    def send(self, image, K, cloud, stamp_ns, radar_stamp_ns, *, info=True):
        """Publish CameraInfo, the radar sweep, then the image (radar first: no sync wait)."""
        height, width = image.shape[:2] if isinstance(image, np.ndarray) else (900, 1600)
        if info:
            self.info.publish(camera_info_msg(K, width, height, stamp_ns))
        if cloud is not None:
            self.radar.publish(cloud_msg(cloud, radar_stamp_ns))
        time.sleep(0.02)  # let the radar land before the image, as it does on a vehicle
        self.image.publish(image_msg(image, stamp_ns) if isinstance(image, np.ndarray)
                           else image)

    def get(self, name='depth'):
        """The next message on output ``name``."""
        return self.harness.get(self.out[name], TIMEOUT, f'/xdrcdepth/{name}')


def test_depth_for_every_bundled_frame_equals_the_pipeline(node_model, frames, extrinsics,
                                                           reference):
    """Each real nuScenes frame sent as Image rgb8 + CameraInfo + an 18-field ARS408
    PointCloud2 comes back as REP 118 depth with the image's stamp and frame, sized like
    ~/camera_info, and equal to DepthPipeline.run on the same frame."""
    from xdrcdepth_ros.node import XdrcDepthNode

    pipeline = reference()
    with Harness() as harness:
        node = harness.add(XdrcDepthNode(context=harness.context,
                                         parameter_overrides=node_params(node_model, extrinsics)))
        rig = Rig(harness, node)
        for image, K, cloud, stamp, radar_stamp, _ in frames:
            rig.send(image, K, cloud, stamp, radar_stamp)
            depth_msg, info_msg = rig.get('depth'), rig.get('camera_info')
            expected = pipeline.run(reference_frame(image, K, cloud, stamp, radar_stamp,
                                                    extrinsics))
            assert conversions.stamp_to_ns(depth_msg.header.stamp) == stamp
            assert depth_msg.header.frame_id == 'CAM_FRONT' == info_msg.header.frame_id
            assert conversions.stamp_to_ns(info_msg.header.stamp) == stamp
            assert depth_msg.encoding == '32FC1'
            assert (depth_msg.width, depth_msg.height) == (info_msg.width, info_msg.height)
            depth = depth_array(depth_msg)
            valid = np.isfinite(depth)
            assert valid.any()
            assert np.all((depth[valid] > 0) & (depth[valid] <= pipeline.max_depth))
            assert np.array_equal(np.isnan(depth), np.isnan(expected.depth))
            np.testing.assert_allclose(depth[valid], expected.depth[valid], rtol=0, atol=1e-6)
            np.testing.assert_allclose(np.reshape(info_msg.k, (3, 3)), expected.K, atol=1e-9)
            assert len(expected.radar_map[0].nonzero()[0]) > 0  # the radar really went in
        values = node.diagnostics()[2]
        assert values['published'] == str(len(frames))
        assert values['frames_out'] == str(len(frames))


def test_compressed_input_16uc1_camera_size_and_optional_outputs(node_model, frames,
                                                                 extrinsics, reference):
    """CompressedImage (the JPEG bytes) in; 16UC1 millimetres at the camera size out, plus the
    colour, saliency and point cloud outputs once someone subscribes to them."""
    from xdrcdepth_ros.node import XdrcDepthNode

    pipeline = reference('camera')
    params = node_params(node_model, extrinsics, image_transport='compressed',
                         depth_encoding='16UC1', output_size='camera', publish_color=True,
                         publish_saliency=True, publish_points=True, points_stride=8)
    outputs = ('depth', 'camera_info', 'depth_color', 'saliency_overlay', 'points')
    with Harness() as harness:
        node = harness.add(XdrcDepthNode(context=harness.context, parameter_overrides=params))
        rig = Rig(harness, node, compressed=True, outputs=outputs)
        for image, K, cloud, stamp, radar_stamp, jpeg in frames[3:5]:
            rig.send(compressed_msg(jpeg, stamp), K, cloud, stamp, radar_stamp)
            received = {name: rig.get(name) for name in outputs}
            decoded = conversions.compressed_to_rgb(compressed_msg(jpeg, stamp))
            expected = pipeline.run(reference_frame(decoded, K, cloud, stamp, radar_stamp,
                                                    extrinsics))
            depth = received['depth']
            assert depth.encoding == '16UC1'
            assert (depth.width, depth.height) == (1600, 900)
            assert np.array_equal(depth_array(depth),
                                  conversions.depth_to_image_array(expected.depth, '16UC1'))
            np.testing.assert_allclose(np.reshape(received['camera_info'].k, (3, 3)), K)
            color = received['depth_color']
            assert (color.encoding, color.width, color.height) == ('rgb8', 1600, 900)
            assert received['saliency_overlay'].encoding == 'rgb8'
            cloud_out = conversions.pointcloud2_to_array(received['points'])
            assert received['points'].header.frame_id == 'CAM_FRONT'
            expected_points = conversions.depth_to_points(expected.depth, expected.K, 8)
            assert cloud_out.shape[0] == len(expected_points) > 0
            np.testing.assert_allclose(cloud_out['z'], expected_points[:, 2], atol=1e-3)
            for msg in received.values():
                assert conversions.stamp_to_ns(msg.header.stamp) == stamp
