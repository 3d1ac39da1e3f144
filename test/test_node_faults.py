"""Bad input never stops the node: each malformed message is skipped and counted, and the
good frames around it still come out (real rclpy + DDS, real model)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip('rclpy', reason='needs rclpy (pip install -e .[ros] or a ROS 2 install)')

from ros_helpers import (cloud_msg, depth_array, extrinsics, frames, Harness,  # noqa: E402
                         header, node_model, node_params, reference, reference_frame, Rig)

from xdrcdepth_ros.core import conversions  # noqa: E402

pytestmark = pytest.mark.ros
__all__ = ['node_model', 'frames', 'extrinsics', 'reference']  # fixtures used by name

STEP_NS = 100_000_000


class Script:
    """Sends the first bundled frame again and again under new, increasing stamps."""

    def __init__(self, rig, frame, extrinsics, pipeline):
        self.rig, self.pipeline, self.extrinsics = rig, pipeline, extrinsics
        self.image, self.K, self.cloud, self.stamp, _, _ = frame

    def next_stamp(self):
        self.stamp += STEP_NS
        return self.stamp

    def bad(self, counter, *, image=None, cloud=None, info=False, **kwargs):
        """Send a frame built from the given parts and wait until ``counter`` grows."""
        before = self.rig.counter(counter)
        stamp = self.next_stamp()
        image = image(stamp) if callable(image) else image
        self.rig.deliver(self.image if image is None else image, self.K, cloud, stamp,
                         stamp + 10_000_000, info=info,
                         until=lambda: self.rig.counter(counter) > before, **kwargs)
        return stamp

    def good(self, *, cloud='default', info=True):
        """Send a valid image; its depth must be the next output and match the pipeline."""
        stamp = self.next_stamp()
        cloud = self.cloud if isinstance(cloud, str) else cloud
        msg = self.rig.deliver(self.image, self.K, cloud, stamp, stamp + 10_000_000, info=info)
        assert conversions.stamp_to_ns(msg.header.stamp) == stamp
        return depth_array(msg)

    def expected(self, with_radar):
        frame = reference_frame(self.image, self.K, self.cloud if with_radar else None,
                                self.stamp, self.stamp + 10_000_000, self.extrinsics)
        return self.pipeline.run(frame).depth


def raw_image(stamp, width, height, encoding, step, data):
    """An Image message with whatever fields it is given (no checks)."""
    from sensor_msgs.msg import Image

    return Image(header=header(stamp, 'CAM_FRONT'), height=height, width=width,
                 encoding=encoding, step=step, data=bytes(data))


def test_malformed_messages_are_skipped_and_counted_while_good_frames_flow(
        node_model, frames, extrinsics, reference):
    """Missing/zero CameraInfo, unsupported or truncated images, a size change, radar without
    the configured fields, empty/NaN/corrupt clouds and stale stamps: each is skipped with a
    counter, the frame runs without radar where that is the policy, the node keeps going."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, PointField

    from xdrcdepth_ros.ros.node import XdrcDepthNode

    params = node_params(node_model, extrinsics, diagnostics_period_s=0.5)
    with Harness() as harness:
        node = harness.add(XdrcDepthNode(context=harness.context, parameter_overrides=params))
        rig = Rig(harness, node)
        diagnostics = harness.subscribe(DiagnosticArray, '/diagnostics')
        script = Script(rig, frames[0], extrinsics, reference())
        image, K, cloud = script.image, script.K, script.cloud

        script.bad('skipped_no_camera_info', cloud=cloud)
        np.testing.assert_allclose(script.good(), script.expected(True), atol=1e-6, rtol=0)

        zero_info = CameraInfo(header=header(script.stamp, 'CAM_FRONT'), width=1600, height=900)
        rig.info.publish(zero_info)
        rig.wait_counter('skipped_bad_camera_info', 0)
        script.good(info=False)  # the last valid CameraInfo is kept

        script.bad('skipped_bad_image',
                   image=lambda stamp: raw_image(stamp, 4, 4, 'yuv422', 8, bytes(32)))
        script.bad('skipped_bad_image',  # truncated: 900 bytes of a 1600x900 rgb8 image
                   image=lambda stamp: raw_image(stamp, 1600, 900, 'rgb8', 4800, bytes(900)))
        script.good(info=False)

        half = np.ascontiguousarray(image[::2, ::2])
        script.bad('skipped_size_mismatch', image=half)
        script.good(info=False)

        xyz_only = np.ascontiguousarray(cloud[['x', 'y', 'z']]).astype(
            [('x', '<f4'), ('y', '<f4'), ('z', '<f4')])
        nan_cloud = cloud.copy()
        nan_cloud['x'] = np.nan
        for bad_cloud in (xyz_only, cloud[:0], nan_cloud):
            depth = script.good(cloud=bad_cloud, info=False)
            np.testing.assert_allclose(depth, script.expected(False), atol=1e-6, rtol=0)
        assert rig.counter('radar_unused_bad_cloud') == 1
        assert rig.counter('radar_points_nonfinite') == len(cloud)

        corrupt = cloud_msg(cloud, script.stamp + STEP_NS + 10_000_000)
        corrupt.fields.append(PointField(name='beyond', offset=corrupt.point_step,
                                         datatype=PointField.FLOAT32, count=1))
        before = rig.counter('radar_unused_bad_cloud')
        rig.radar.publish(corrupt)
        depth = script.good(cloud=None, info=False)
        assert rig.counter('radar_unused_bad_cloud') == before + 1
        np.testing.assert_allclose(depth, script.expected(False), atol=1e-6, rtol=0)

        stale = script.stamp - 5 * STEP_NS
        before = rig.counter('dropped_stale')
        rig.deliver(image, K, None, stale, stale, info=False,
                    until=lambda: rig.counter('dropped_stale') > before)
        script.good(info=False)

        result = node.set_parameters([Parameter('require_radar', value=True)])[0]
        assert result.successful, result.reason
        script.bad('skipped_no_usable_radar', cloud=xyz_only)
        node.set_parameters([Parameter('require_radar', value=False)])
        script.good(info=False)

        assert rig.counter('published') == 10
        seen, levels = {}, set()
        keys = ('provider', 'rate_hz', 'engine_ms', 'skipped_bad_image',
                'radar_unused_bad_cloud', 'dropped_superseded')

        def drain() -> bool:
            # Counters are totals since start, so a report published after the last fault
            # carries them all; on a loaded machine that report can arrive a period late.
            while not diagnostics.empty():
                for status in diagnostics.get().status:
                    if status.name == 'xdrcdepth: depth':
                        seen.update({kv.key: kv.value for kv in status.values})
                        levels.add(status.level)
            return all(key in seen for key in keys)

        try:
            harness.wait_until(drain, 5.0, 'a /diagnostics report with every counter')
        except AssertionError:
            pass  # the assertions below name the missing key
        for key in keys:
            assert key in seen, key
        # Periods with skipped frames or unusable radar are reported as degraded.
        assert levels & {DiagnosticStatus.WARN, DiagnosticStatus.ERROR}
