"""The pure-Python bag player and recorder over real rclpy / Fast DDS on localhost."""
from __future__ import annotations

import queue
import time

import numpy as np
import pytest

pytest.importorskip('rclpy', reason='needs rclpy (pip install -e .[ros])')

from ros_helpers import Harness  # noqa: E402

from xdrcdepth_ros.core import conversions  # noqa: E402
from xdrcdepth_ros.bag.io import BagReader, BagWriter, QOS_LATCHED  # noqa: E402
from xdrcdepth_ros.bag.messages import header, tf_message, transform_stamped  # noqa: E402
from xdrcdepth_ros.bag.player import BagPlayer  # noqa: E402
from xdrcdepth_ros.bag.recorder import TopicRecorder  # noqa: E402
from xdrcdepth_ros.core.errors import BagError  # noqa: E402

pytestmark = pytest.mark.ros
BASE_NS = 1_700_000_000_000_000_000
TIMEOUT = 20.0


@pytest.fixture(scope='module')
def small_bag(tmp_path_factory):
    """Ten CameraInfo messages 10 ms apart, one latched CameraInfo, and a /tf (no rclpy type)."""
    path = tmp_path_factory.mktemp('player') / 'bag'
    with BagWriter(path) as writer:
        types = writer.store.types
        K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
        for i in range(10):
            stamp = BASE_NS + i * 10_000_000
            writer.write('/cam/camera_info', stamp, conversions.make_camera_info(
                types['sensor_msgs/msg/CameraInfo'], header(writer.store, stamp, f'cam{i}'),
                conversions.CameraModel.from_K(K, 640 + i, 480),
                roi_cls=types['sensor_msgs/msg/RegionOfInterest']))
            writer.write('/tf', stamp, tf_message(writer.store, [transform_stamped(
                writer.store, stamp, 'odom', 'base_link', np.eye(4))]))
        writer.write('/latched', BASE_NS, conversions.make_camera_info(
            types['sensor_msgs/msg/CameraInfo'], header(writer.store, BASE_NS, 'latched'),
            conversions.CameraModel.from_K(K, 1, 1),
            roi_cls=types['sensor_msgs/msg/RegionOfInterest']), qos=QOS_LATCHED)
    return path


def _raw_payloads(bag, topic):
    with BagReader(bag) as reader:
        return [m.raw for m in reader.messages([topic])]


def test_plays_raw_cdr_in_order_and_reports_unplayable_topics(small_bag):
    """Subscribers get the bag's exact bytes in bag order; /tf (tf2_msgs has no wheel) is
    skipped with the reason instead of failing the whole playback."""
    with Harness() as harness:
        recorder = TopicRecorder(harness.node, None,
                                 {'/cam/camera_info': 'sensor_msgs/msg/CameraInfo'},
                                 keep_raw=True)
        player = BagPlayer(harness.node, small_bag, rate=None)
        assert '/tf' in player.stats.skipped_topics
        assert 'tf2_msgs/msg/TFMessage' in player.stats.skipped_topics['/tf']
        player.wait_for_subscribers(['/cam/camera_info'])
        stats = player.play()
        assert stats.published == {'/cam/camera_info': 10, '/latched': 1}
        assert recorder.wait_for_count('/cam/camera_info', 10, TIMEOUT)
        received = list(recorder.raw['/cam/camera_info'])
        stamps = list(recorder.stamps['/cam/camera_info'])
    expected = _raw_payloads(small_bag, '/cam/camera_info')
    assert received == expected
    assert stamps == [BASE_NS + i * 10_000_000 for i in range(10)]


def test_latched_topic_reaches_a_late_subscriber(small_bag):
    """A topic recorded transient-local is re-offered that way (as /tf_static needs)."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo

    with Harness() as harness:
        player = BagPlayer(harness.node, small_bag, topics=['/latched'], rate=None)
        player.play()
        late: queue.Queue = queue.Queue()
        harness.node.create_subscription(
            CameraInfo, '/latched', late.put,
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL))
        msg = harness.get(late, TIMEOUT, 'the latched message')
    assert msg.header.frame_id == 'latched'


def test_window_remap_and_original_pace(small_bag):
    """start/stop select a bag-time window, remap renames topics, rate paces by bag time."""
    with Harness() as harness:
        recorder = TopicRecorder(harness.node, None, {'/renamed': 'sensor_msgs/msg/CameraInfo'})
        player = BagPlayer(harness.node, small_bag, topics=['/cam/camera_info'], rate=2.0,
                           start_ns=BASE_NS + 20_000_000, stop_ns=BASE_NS + 70_000_000,
                           remap={'/cam/camera_info': '/renamed'})
        player.wait_for_subscribers(['/cam/camera_info'])
        stats = player.play()
        assert stats.published == {'/cam/camera_info': 5}
        assert recorder.wait_for_count('/renamed', 5, TIMEOUT)
        assert recorder.stamps['/renamed'] == [BASE_NS + i * 10_000_000 for i in range(2, 7)]


def test_time_spent_in_the_hook_pauses_the_clock(small_bag):
    """A hook that holds one message back (e.g. waiting for the system under test) delays the
    rest by as much: they keep their recorded 10 ms spacing instead of bursting out."""
    with Harness() as harness:
        player = BagPlayer(harness.node, small_bag, topics=['/cam/camera_info'], rate=1.0)
        called: list[float] = []

        def hold_the_fifth(message) -> None:
            called.append(time.perf_counter())
            if len(called) == 5:
                time.sleep(0.2)

        player.play(before_publish=hold_the_fifth)
        assert len(called) == 10
        assert called[5] - called[4] >= 0.2
        gaps_after = np.diff(called[5:])
        assert np.all(gaps_after >= 0.004), gaps_after  # a burst: well under 1 ms apart


def test_bad_arguments_are_rejected(small_bag):
    """Unknown topics and non-positive rates fail before anything is published."""
    with Harness() as harness:
        with pytest.raises(BagError, match='no topic /nope'):
            BagPlayer(harness.node, small_bag, topics=['/nope'])
        with pytest.raises(ValueError, match='rate must be positive'):
            BagPlayer(harness.node, small_bag, rate=0.0)
