"""Latest frame wins: with a model slower than the camera, latency stays bounded and the
superseded frames are dropped and counted (real rclpy + DDS; the slowness is a sleep)."""
from __future__ import annotations

import queue
import time

import cv2
import numpy as np
import pytest

pytest.importorskip('rclpy', reason='needs rclpy (pip install -e .[ros] or a ROS 2 install)')

from ros_helpers import (camera_info_msg, extrinsics, frames, Harness, image_msg,  # noqa: E402
                         node_model, node_params, TIMEOUT)

from xdrcdepth_ros.core import conversions  # noqa: E402

pytestmark = pytest.mark.ros
__all__ = ['node_model', 'frames', 'extrinsics']  # fixtures, used by name

DELAY_S = 0.25  # per frame: five camera periods at 20 Hz
PERIOD_S = 0.05
COUNT = 30
FIFO_LAST_LATENCY_S = COUNT * DELAY_S - (COUNT - 1) * PERIOD_S  # 6.05 s: every frame queued


def slow_pipeline(model):
    """A real DepthPipeline whose run() first sleeps DELAY_S: scheduling is under test."""
    from xdrcdepth_ros.core.engine import Engine
    from xdrcdepth_ros.core.pipeline import DepthPipeline

    class SlowPipeline(DepthPipeline):
        def run(self, frame):
            time.sleep(DELAY_S)
            return super().run(frame)

    return SlowPipeline(Engine(model, providers=['cpu']))


def test_slow_model_drops_superseded_frames_and_latency_does_not_grow(node_model, frames,
                                                                      extrinsics):
    """30 frames at 20 Hz into a 4 Hz model: the newest frame is always the one processed, the
    rest are counted as dropped_superseded, and output latency stays within a few model
    periods (a FIFO would reach ~6 s by the last frame)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image

    from xdrcdepth_ros.ros.node import XdrcDepthNode

    image, K = frames[0][:2]
    # A 0.12x camera (62 KB per image, one UDP datagram) keeps DDS traffic small; the model
    # input size is the same.
    small = np.ascontiguousarray(cv2.resize(image, (192, 108), interpolation=cv2.INTER_AREA))
    K_small = np.diag([0.12, 0.12, 1.0]) @ K
    params = node_params(node_model, extrinsics, diagnostics_period_s=0.2)
    with Harness() as harness:
        node = harness.add(XdrcDepthNode(context=harness.context, parameter_overrides=params,
                                         pipeline=slow_pipeline(node_model)))
        image_pub = harness.publisher(Image, node.input_topics['image'])
        info_pub = harness.publisher(CameraInfo, node.input_topics['camera_info'])
        depth = harness.subscribe(Image, '/xdrcdepth/depth', timed=True)
        diagnostics = harness.subscribe(DiagnosticArray, '/diagnostics')
        harness.wait_connected([image_pub, info_pub])
        harness.wait_subscribed(node, ['/xdrcdepth/depth'])
        clock = harness.node.get_clock()
        info_pub.publish(camera_info_msg(K_small, 192, 108, clock.now().nanoseconds))
        harness.wait_until(lambda: node.frames.camera is not None, TIMEOUT, 'the CameraInfo')

        sent = []
        for _ in range(COUNT):
            sent.append(clock.now().nanoseconds)
            image_pub.publish(image_msg(small, sent[-1]))
            time.sleep(PERIOD_S)
        outputs = []  # (stamp, latency s) of every depth image
        while not outputs or outputs[-1][0] != sent[-1]:
            try:  # until the last frame's depth, or quiet (DDS may drop a best-effort image)
                received_ns, msg = depth.get(timeout=TIMEOUT if not outputs else 4 * DELAY_S)
            except queue.Empty:
                break
            stamp = conversions.stamp_to_ns(msg.header.stamp)
            outputs.append((stamp, (received_ns - stamp) / 1e9))

        stamps = [stamp for stamp, _ in outputs]
        latencies = [latency for _, latency in outputs]
        assert stamps == sorted(set(stamps)) and set(stamps) <= set(sent)
        assert 2 <= len(outputs) < COUNT // 2
        assert outputs[-1][0] in sent[-3:]  # the newest frames are the ones processed
        # Latest frame wins: an output waits for the frame in flight plus its own run (~0.6 s).
        # On the 2-core CI machine, with the rest of the suite in the same process, delivery
        # stalls of 1-2.6 s were seen; a FIFO would be at 3-6 s over the second half.
        steady = latencies[len(latencies) // 2:]
        assert max(steady) < 8 * DELAY_S, latencies
        assert max(latencies) < 0.5 * FIFO_LAST_LATENCY_S, latencies

        values = node.diagnostics()[2]
        dropped = int(values['dropped_superseded'])
        assert dropped > 0
        assert COUNT // 2 < int(values['images_in']) <= COUNT
        assert int(values['frames_out']) == len(outputs) == int(values['published'])
        assert int(values['images_in']) == (int(values['frames_out']) + dropped
                                            + int(values['pending_images']))
        harness.wait_until(lambda: not diagnostics.empty(), 5.0, 'a /diagnostics message')
        reported = 0
        while not diagnostics.empty():
            for status in diagnostics.get().status:
                values = {kv.key: kv.value for kv in status.values}
                reported = max(reported, int(values.get('dropped_superseded', 0)))
        assert reported > 0
