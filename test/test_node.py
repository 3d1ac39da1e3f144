"""The node for real: rclpy, Fast DDS on localhost, the bundled nuScenes frames, ONNX Runtime.

Every test starts the node in-process on its own rclpy context and talks to it over DDS through
a test node (see ``ros_helpers``); nothing is mocked. Waits are bounded by deadlines.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip('rclpy', reason='needs rclpy (pip install -e .[ros] or a ROS 2 install)')

from ros_helpers import (ATTEMPTS, camera_info_msg, cloud_msg, compressed_msg,  # noqa: E402
                         depth_array, extrinsics, frames, Harness, image_msg, node_model,
                         node_params, reference, reference_frame, Rig, TIMEOUT)

from xdrcdepth_ros.core import conversions  # noqa: E402

pytestmark = pytest.mark.ros
__all__ = ['node_model', 'frames', 'extrinsics', 'reference']  # fixtures, used by name


def test_depth_for_every_bundled_frame_equals_the_pipeline(node_model, frames, extrinsics,
                                                           reference):
    """Each real nuScenes frame sent as Image rgb8 + CameraInfo + an 18-field ARS408
    PointCloud2 comes back as REP 118 depth with the image's stamp and frame, sized like
    ~/camera_info, and equal to DepthPipeline.run on the same frame."""
    from xdrcdepth_ros.ros.node import XdrcDepthNode

    pipeline = reference()
    with Harness() as harness:
        node = harness.add(XdrcDepthNode(context=harness.context,
                                         parameter_overrides=node_params(node_model, extrinsics)))
        rig = Rig(harness, node)
        for image, K, cloud, stamp, radar_stamp, _ in frames:
            depth_msg = rig.deliver(image, K, cloud, stamp, radar_stamp)
            info_msg = rig.get('camera_info')
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
    from xdrcdepth_ros.ros.node import XdrcDepthNode

    pipeline = reference('camera')
    params = node_params(node_model, extrinsics, image_transport='compressed',
                         depth_encoding='16UC1', output_size='camera', publish_color=True,
                         publish_saliency=True, publish_points=True, points_stride=8)
    outputs = ('depth', 'camera_info', 'depth_color', 'saliency_overlay', 'points')
    with Harness() as harness:
        node = harness.add(XdrcDepthNode(context=harness.context, parameter_overrides=params))
        rig = Rig(harness, node, compressed=True, outputs=outputs)
        for image, K, cloud, stamp, radar_stamp, jpeg in frames[3:5]:
            received = {'depth': rig.deliver(compressed_msg(jpeg, stamp), K, cloud, stamp,
                                             radar_stamp)}
            received.update({name: rig.get(name) for name in outputs[1:]})
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


def test_an_image_published_before_its_camera_info_still_gets_depth(node_model, frames,
                                                                    extrinsics, reference):
    """Under ``ros2 bag play`` an image often lands just before its CameraInfo. The node holds
    it (up to sync_wait_s) until the CameraInfo arrives instead of dropping it."""
    from xdrcdepth_ros.ros.node import XdrcDepthNode

    image, K, cloud, stamp, _, _ = frames[0]
    radar_stamp = stamp + 10_000_000  # after the image: the radar settles it at once
    params = node_params(node_model, extrinsics, sync_wait_s=2.0)
    with Harness() as harness:
        node = harness.add(XdrcDepthNode(context=harness.context, parameter_overrides=params))
        rig = Rig(harness, node)
        # Inputs are best effort: send again until the node has the radar, then the image.
        for kind, publisher, msg in (('radar', rig.radar, cloud_msg(cloud, radar_stamp)),
                                     ('image', rig.image, image_msg(image, stamp))):
            for _ in range(ATTEMPTS):
                publisher.publish(msg)
                try:
                    harness.wait_until(lambda: rig.counter(f'{kind}_received') > 0,
                                       TIMEOUT / ATTEMPTS, f'the {kind} at the node')
                    break
                except AssertionError:
                    continue
        assert rig.counter('image_received') >= 1
        assert node.frames.camera is None
        rig.info.publish(camera_info_msg(K, image.shape[1], image.shape[0], stamp))
        depth_msg = rig.get('depth')
        assert conversions.stamp_to_ns(depth_msg.header.stamp) == stamp
        expected = reference().run(reference_frame(image, K, cloud, stamp, radar_stamp,
                                                   extrinsics))
        depth = depth_array(depth_msg)
        assert np.array_equal(np.isnan(depth), np.isnan(expected.depth))
        valid = np.isfinite(depth)
        np.testing.assert_allclose(depth[valid], expected.depth[valid], rtol=0, atol=1e-6)
        values = node.diagnostics()[2]
        assert 'skipped_no_camera_info' not in values
        assert values['published'] == '1'
