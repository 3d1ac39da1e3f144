"""Latest frame wins: with a model slower than the camera, the worker always takes the newest
frame, the superseded ones are dropped and counted, and nothing queues up (real rclpy + DDS;
the slowness is a sleep). Counts and ordering only: timings belong in benchmarks
(``bench/bench_node.py``, ``docs/bench/``), where a loaded machine cannot fail a test."""
from __future__ import annotations

import threading
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
# Sending takes at least (COUNT - 1) * PERIOD_S, during which a model that sleeps DELAY_S per
# frame finishes at most that / DELAY_S frames; after the last image, latest-wins runs at most
# the frame in flight plus the newest. A FIFO would run every image. Load only lowers the count.
MAX_RUNS = int((COUNT - 1) * PERIOD_S / DELAY_S) + 3


def slow_pipeline(model):
    """A real DepthPipeline whose run() first sleeps DELAY_S and records what it ran, in order:
    scheduling is under test."""
    from xdrcdepth_ros.core.engine import Engine
    from xdrcdepth_ros.core.pipeline import DepthPipeline

    class SlowPipeline(DepthPipeline):
        def __init__(self, engine):
            super().__init__(engine)
            self.lock = threading.Lock()
            self.started: list[int] = []  # frame stamps, ns
            self.finished = 0

        def run(self, frame):
            with self.lock:
                self.started.append(frame.stamp_ns)
            time.sleep(DELAY_S)
            try:
                return super().run(frame)
            finally:
                with self.lock:
                    self.finished += 1

    return SlowPipeline(Engine(model, providers=['cpu']))


def test_slow_model_runs_only_the_newest_frames_and_counts_the_rest(node_model, frames,
                                                                    extrinsics):
    """30 frames at 20 Hz into a 4 Hz model: frames are run in stamp order, each at most once,
    far fewer than were sent, the last one received is among them, every run is published, and
    images_in = published + dropped_superseded (also on /diagnostics)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image

    from xdrcdepth_ros.ros.node import XdrcDepthNode

    image, K = frames[0][:2]
    # A 0.12x camera (62 KB per image, one UDP datagram) keeps DDS traffic small; the model
    # input size is the same.
    small = np.ascontiguousarray(cv2.resize(image, (192, 108), interpolation=cv2.INTER_AREA))
    K_small = np.diag([0.12, 0.12, 1.0]) @ K
    params = node_params(node_model, extrinsics, diagnostics_period_s=0.2)
    pipeline = slow_pipeline(node_model)
    with Harness() as harness:
        node = harness.add(XdrcDepthNode(context=harness.context, parameter_overrides=params,
                                         pipeline=pipeline))
        image_pub = harness.publisher(Image, node.input_topics['image'])
        info_pub = harness.publisher(CameraInfo, node.input_topics['camera_info'])
        depth = harness.subscribe(Image, '/xdrcdepth/depth')
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

        def settled() -> bool:
            """Nothing buffered, nothing in flight, every run's depth received."""
            values = node.diagnostics()[2]
            with pipeline.lock:
                idle = len(pipeline.started) == pipeline.finished
            return (idle and int(values['pending_images']) == 0
                    and depth.qsize() == int(values['published']) == pipeline.finished)

        harness.wait_until(settled, TIMEOUT, 'the node to finish its frames')
        stamps = [conversions.stamp_to_ns(depth.get().header.stamp)
                  for _ in range(depth.qsize())]

        assert stamps == pipeline.started  # every run published, in the order it ran
        assert stamps == sorted(set(stamps)) and set(stamps) <= set(sent)
        assert 2 <= len(stamps) <= MAX_RUNS < COUNT, stamps
        values = node.diagnostics()[2]
        images_in, dropped = int(values['images_in']), int(values['dropped_superseded'])
        if images_in == COUNT:  # best effort: DDS may drop the last image itself
            assert stamps[-1] == sent[-1]  # the newest frame is never left behind
        assert dropped > 0
        assert COUNT // 2 < images_in <= COUNT
        assert int(values['frames_out']) == len(stamps) == int(values['published'])
        assert images_in == len(stamps) + dropped
        harness.wait_until(lambda: not diagnostics.empty(), TIMEOUT, 'a /diagnostics message')
        reported = 0
        while not diagnostics.empty():
            for status in diagnostics.get().status:
                values = {kv.key: kv.value for kv in status.values}
                reported = max(reported, int(values.get('dropped_superseded', 0)))
        assert reported > 0
