"""The node's image_transport outputs and organised cloud, over real DDS: what a
compressedDepth / compressed subscriber and a depth_image_proc-style consumer receive."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip('rclpy', reason='needs rclpy (pip install -e .[ros] or a ROS 2 install)')

from ros_helpers import (depth_array, extrinsics, frames, Harness, node_model,  # noqa: E402
                         node_params, Rig)
from test_conversions import decode_compressed_depth  # noqa: E402

from xdrcdepth_ros.core import conversions  # noqa: E402

pytestmark = pytest.mark.ros
__all__ = ['node_model', 'frames', 'extrinsics']  # fixtures, used by name
OUTPUTS = ('depth', 'camera_info', 'depth/compressedDepth', 'depth_color',
           'depth_color/compressed', 'points')


@pytest.mark.parametrize('encoding', ['16UC1', '32FC1'])
def test_compressed_outputs_and_organised_points(node_model, frames, extrinsics, encoding):
    """~/depth/compressedDepth decodes (the standard decoder's way) to ~/depth (16UC1 exactly,
    32FC1 within a quantisation step); ~/depth_color/compressed is a JPEG of ~/depth_color;
    ~/points is height x width with NaN where depth is invalid."""
    from xdrcdepth_ros.ros.node import XdrcDepthNode

    image, K, cloud, stamp, radar_stamp, _ = frames[1]
    params = node_params(node_model, extrinsics, publish_compressed=True, publish_color=True,
                         publish_points=True, points_organized=True, points_stride=2,
                         depth_encoding=encoding)
    with Harness() as harness:
        node = harness.add(XdrcDepthNode(context=harness.context, parameter_overrides=params))
        rig = Rig(harness, node, outputs=OUTPUTS)
        received = {'depth': rig.deliver(image, K, cloud, stamp, radar_stamp)}
        received.update({name: rig.get(name) for name in OUTPUTS[1:]})
    depth = depth_array(received['depth'])
    packed = received['depth/compressedDepth']
    assert packed.format == f'{encoding}; compressedDepth png'
    decoded_encoding, decoded = decode_compressed_depth(packed.format, bytes(packed.data))
    assert decoded_encoding == encoding and decoded.shape == depth.shape
    if encoding == '16UC1':
        np.testing.assert_array_equal(decoded, depth)
    else:
        valid = np.isfinite(depth)
        assert np.array_equal(np.isfinite(decoded), valid)
        a = 100.0 * 101.0
        assert np.all(np.abs(decoded[valid] - depth[valid]) <= depth[valid] ** 2 / a + 1e-3)
    jpeg = received['depth_color/compressed']
    assert jpeg.format == 'rgb8; jpeg compressed bgr8'
    colour = np.array(conversions.image_to_array(received['depth_color']))
    from_jpeg = cv2.imdecode(np.frombuffer(bytes(jpeg.data), np.uint8), cv2.IMREAD_COLOR)
    assert from_jpeg.shape == colour.shape
    assert np.abs(from_jpeg[:, :, ::-1].astype(int) - colour).mean() < 4.0
    points = received['points']
    assert (points.height, points.width) == ((depth.shape[0] + 1) // 2, (depth.shape[1] + 1) // 2)
    z = conversions.pointcloud2_to_array(points)['z'].reshape(points.height, points.width)
    assert points.is_dense == bool(np.isfinite(z).all())
    metres = depth[::2, ::2] / (1000.0 if encoding == '16UC1' else 1.0)
    valid = np.isfinite(metres) & (metres > 0)
    np.testing.assert_allclose(z[valid], metres[valid], atol=1e-3)
    if encoding == '32FC1':  # (16UC1 also marks depth beyond 65.535 m invalid, the cloud not)
        assert np.array_equal(np.isnan(z), ~valid)
    for msg in received.values():
        assert conversions.stamp_to_ns(msg.header.stamp) == stamp


def test_a_remapped_image_moves_its_compressed_transport_too(node_model, frames, extrinsics):
    """``-r image:=/CAM_FRONT/image_raw`` with image_transport compressed subscribes
    ``/CAM_FRONT/image_raw/compressed`` (as image_transport resolves it) in namespace /front, and
    the JPEGs published there come back as depth on /front/xdrcdepth/depth."""
    from sensor_msgs.msg import Image

    from ros_helpers import compressed_msg
    from xdrcdepth_ros.ros.node import XdrcDepthNode

    image, K, cloud, stamp, radar_stamp, jpeg = frames[2]
    params = node_params(node_model, extrinsics, image_transport='compressed')
    with Harness() as harness:
        node = harness.add(XdrcDepthNode(
            context=harness.context, parameter_overrides=params, namespace='/front',
            cli_args=['--ros-args', '-r', 'image:=/CAM_FRONT/image_raw']))
        assert node.input_topics == {'image': '/CAM_FRONT/image_raw/compressed',
                                     'camera_info': '/front/camera_info',
                                     'radars': ('/front/radar_0',)}
        depth_out = harness.subscribe(Image, '/front/xdrcdepth/depth')
        rig = Rig(harness, node, compressed=True, outputs=())
        rig.out['depth'] = depth_out
        harness.wait_subscribed(node, ['/front/xdrcdepth/depth'])
        depth = rig.deliver(compressed_msg(jpeg, stamp), K, cloud, stamp, radar_stamp)
    assert conversions.stamp_to_ns(depth.header.stamp) == stamp
