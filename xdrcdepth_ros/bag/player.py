"""A tiny rosbag2 player: ``rosbags`` reader → rclpy publishers, raw CDR bytes (no re-encoding).

It stands in for ``ros2 bag play`` where only the rclpy wheels are installed (tests, the demo).
Messages go out with the QoS recorded in the bag (so ``/tf_static`` is transient local), either
at the original pace scaled by ``rate`` or as fast as possible. Topics whose message package is
not importable in this Python (e.g. ``tf2_msgs`` with the PyPI wheels) are skipped and reported.

rclpy is imported inside functions so importing this module needs no ROS.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import importlib
from pathlib import Path
import time
from typing import Any, Callable, Iterable

from xdrcdepth_ros.bag.io import BagMessage, BagReader
from xdrcdepth_ros.core.errors import BagError


def ros_message_class(msgtype: str) -> Any | None:
    """The rclpy message class of ``pkg/msg/Name``, or None if the package is not importable."""
    package, _, name = msgtype.rpartition('/')
    try:
        module = importlib.import_module(package.replace('/', '.'))
    except ImportError:
        return None
    return getattr(module, name, None)


def rclpy_qos(qos: Any | None, default_depth: int = 10) -> Any:
    """rclpy ``QoSProfile`` equivalent to a ``rosbags`` ``Qos`` (reliable/volatile if None)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if qos is None:
        return QoSProfile(depth=default_depth)
    reliability = (ReliabilityPolicy.BEST_EFFORT if qos.reliability.name == 'BEST_EFFORT'
                   else ReliabilityPolicy.RELIABLE)
    durability = (DurabilityPolicy.TRANSIENT_LOCAL if qos.durability.name == 'TRANSIENT_LOCAL'
                  else DurabilityPolicy.VOLATILE)
    history = (HistoryPolicy.KEEP_ALL if qos.history.name == 'KEEP_ALL'
               else HistoryPolicy.KEEP_LAST)
    depth = int(qos.depth) if int(qos.depth) > 0 else default_depth
    return QoSProfile(history=history, depth=depth, reliability=reliability,
                      durability=durability)


def pause_before_first(topic: str, seconds: float) -> Callable[[BagMessage], None]:
    """A ``before_publish`` hook that waits ``seconds`` before the first message on ``topic``.

    Drivers publish CameraInfo continuously, so a node has one before any image; a bag has one
    just before each image, and a subscriber may take the two in either order. Pausing before
    the first image lets the CameraInfo published ahead of it land first.
    """
    state = {'done': False}

    def hook(message: BagMessage) -> None:
        if message.topic == topic and not state['done']:
            state['done'] = True
            time.sleep(seconds)
    return hook


@dataclass
class PlaybackStats:
    """What :meth:`BagPlayer.play` did.

    Attributes:
        published: topic → messages published.
        skipped_topics: topic → reason it was not played.
        wall_s: seconds spent playing.
    """

    published: dict[str, int] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0


class BagPlayer:
    """Publish a bag's messages on an rclpy node.

    Args:
        node: the rclpy node that owns the publishers.
        bag: bag folder or ``.mcap`` file.
        topics: topics to play (default: all playable ones).
        rate: playback speed factor; None publishes as fast as possible.
        max_gap_s: longest wall-clock pause between two messages (bags that join scenes
            recorded months apart would otherwise wait that long), seconds.
        start_ns: first bag time to play (inclusive), ns.
        stop_ns: bag time to stop at (exclusive), ns.
        remap: topic → published topic name.

    Raises:
        FileNotFoundError, BagError: the bag cannot be opened or lacks a requested topic.
    """

    def __init__(self, node: Any, bag: str | Path, *, topics: Iterable[str] | None = None,
                 rate: float | None = 1.0, max_gap_s: float = 1.0, start_ns: int | None = None,
                 stop_ns: int | None = None, remap: dict[str, str] | None = None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f'rate must be positive (None: as fast as possible), got {rate}')
        self.node = node
        self.bag = Path(bag)
        self.rate = rate
        self.max_gap_ns = int(max_gap_s * 1e9)
        self.start_ns = start_ns
        self.stop_ns = stop_ns
        self.stats = PlaybackStats()
        self._publishers: dict[str, Any] = {}
        remap = remap or {}
        with BagReader(self.bag) as reader:
            available = reader.topics
            wanted = list(available) if topics is None else list(topics)
            for topic in wanted:
                if topic not in available:
                    raise BagError(f'bag {self.bag} has no topic {topic} '
                                   f'(topics: {", ".join(sorted(available))})')
                cls = ros_message_class(available[topic])
                if cls is None:
                    self.stats.skipped_topics[topic] = (
                        f'message type {available[topic]} is not importable here')
                    continue
                self._publishers[topic] = node.create_publisher(
                    cls, remap.get(topic, topic), rclpy_qos(reader.qos(topic)))

    @property
    def topics(self) -> list[str]:
        """Topics that will be published (bag names)."""
        return list(self._publishers)

    def publisher(self, topic: str) -> Any:
        """The rclpy publisher of a bag topic."""
        return self._publishers[topic]

    def wait_for_subscribers(self, topics: Iterable[str], timeout_s: float = 10.0) -> None:
        """Block until each of ``topics`` has at least one matched subscription (DDS discovery).

        Raises:
            BagError: a topic is not played, or no subscriber appeared within ``timeout_s``.
        """
        topics = list(topics)
        for topic in topics:
            if topic not in self._publishers:
                raise BagError(f'topic {topic} is not played from {self.bag}')
        deadline = time.monotonic() + timeout_s
        while True:
            waiting = [t for t in topics if self._publishers[t].get_subscription_count() < 1]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise BagError(f'no subscriber appeared on {", ".join(waiting)} within '
                               f'{timeout_s:.0f} s')
            time.sleep(0.01)

    def play(self, *, before_publish: Callable[[BagMessage], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> PlaybackStats:
        """Publish the messages in bag-time order; returns :attr:`stats`.

        Args:
            before_publish: called with each message just before it is published (lets a caller
                pace playback on the system under test, e.g. wait for its previous output);
                the time spent in it pauses the playback clock, so later messages keep their
                recorded spacing instead of bursting out to catch up.
            should_stop: polled before each message; playback ends when it returns True.
        """
        started = time.perf_counter_ns()
        wall_anchor: int | None = None
        bag_anchor = 0
        previous_ns: int | None = None
        with BagReader(self.bag) as reader:
            for message in reader.messages(self._publishers):
                if self.start_ns is not None and message.stamp_ns < self.start_ns:
                    continue
                if self.stop_ns is not None and message.stamp_ns >= self.stop_ns:
                    break
                if should_stop is not None and should_stop():
                    break
                if self.rate is not None:
                    if wall_anchor is None or previous_ns is None:
                        wall_anchor, bag_anchor = time.perf_counter_ns(), message.stamp_ns
                    elif message.stamp_ns - previous_ns > self.max_gap_ns:
                        # Re-anchor so a long gap costs max_gap_s of wall time, not its length.
                        bag_anchor += message.stamp_ns - previous_ns - self.max_gap_ns
                    due = wall_anchor + (message.stamp_ns - bag_anchor) / self.rate
                    delay = (due - time.perf_counter_ns()) / 1e9
                    if delay > 0:
                        time.sleep(delay)
                previous_ns = message.stamp_ns
                if before_publish is not None:
                    hook_started = time.perf_counter_ns()
                    before_publish(message)
                    if wall_anchor is not None:  # time spent in the hook pauses the clock
                        wall_anchor += time.perf_counter_ns() - hook_started
                self._publishers[message.topic].publish(message.raw)
                self.stats.published[message.topic] = (
                    self.stats.published.get(message.topic, 0) + 1)
        self.stats.wall_s = (time.perf_counter_ns() - started) / 1e9
        return self.stats

    def destroy(self) -> None:
        """Destroy the publishers."""
        for publisher in self._publishers.values():
            self.node.destroy_publisher(publisher)
        self._publishers.clear()
