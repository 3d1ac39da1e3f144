"""Record rclpy topics into a rosbag2 with ``rosbags`` (raw CDR, no re-encoding).

Used by the demo and the node tests to capture the node's outputs. Bag time is the message's
header stamp when it has one (so recorded outputs line up with the input bag), else the receive
time. Callbacks run in executor threads while a SQLite storage may only be used from the thread
that opened it, so messages are queued and written by :meth:`TopicRecorder.flush`, called from
the writer's thread. rclpy is imported inside functions so importing this module needs no ROS.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from xdrcdepth_ros.bag.io import BagWriter, typestore
from xdrcdepth_ros.core.conversions import stamp_to_ns
from xdrcdepth_ros.bag.player import ros_message_class
from xdrcdepth_ros.core.errors import BagError


class TopicRecorder:
    """Subscribe to topics (raw) and queue every message for an open :class:`BagWriter`.

    Args:
        node: rclpy node that owns the subscriptions.
        writer: an open writer (inside its ``with`` block) that :meth:`flush` writes to, from
            the thread that opened it; None only counts (and with ``keep_raw`` keeps) messages.
        topics: topic → message type (``sensor_msgs/msg/Image`` style).
        depth: subscription queue depth (reliable, volatile).
        keep_raw: also keep every payload in :attr:`raw` (memory grows with the recording).
    """

    def __init__(self, node: Any, writer: BagWriter | None, topics: dict[str, str], *,
                 depth: int = 50, keep_raw: bool = False) -> None:
        from rclpy.qos import QoSProfile

        self.node = node
        self.writer = writer
        self.keep_raw = keep_raw
        self.store = typestore()
        self._lock = threading.Condition()
        self._pending: list[tuple[str, str, int, bytes]] = []
        self.stamps: dict[str, list[int]] = {topic: [] for topic in topics}
        self.arrivals_ns: dict[str, list[int]] = {topic: [] for topic in topics}
        """Per topic, ``time.monotonic_ns()`` when each message arrived (same order as stamps)."""
        self.raw: dict[str, list[bytes]] = {topic: [] for topic in topics}
        self._subscriptions = []
        for topic, msgtype in topics.items():
            cls = ros_message_class(msgtype)
            if cls is None:
                raise BagError(f'cannot record {topic}: message type {msgtype} is not importable')
            self._subscriptions.append(node.create_subscription(
                cls, topic, self._callback(topic, msgtype), QoSProfile(depth=depth), raw=True))

    def _callback(self, topic: str, msgtype: str) -> Any:
        has_header = 'header' in getattr(self.store.types[msgtype], '__dataclass_fields__', {})

        def callback(raw: bytes) -> None:
            arrival_ns = time.monotonic_ns()
            stamp_ns = time.time_ns()
            if has_header:
                stamp_ns = stamp_to_ns(self.store.deserialize_cdr(raw, msgtype).header.stamp)
            with self._lock:
                if self.writer is not None:
                    self._pending.append((topic, msgtype, stamp_ns, bytes(raw)))
                self.stamps[topic].append(stamp_ns)
                self.arrivals_ns[topic].append(arrival_ns)
                if self.keep_raw:
                    self.raw[topic].append(bytes(raw))
                self._lock.notify_all()
        return callback

    def flush(self) -> int:
        """Write the queued messages (call from the writer's thread); returns how many."""
        with self._lock:
            pending, self._pending = self._pending, []
            writer = self.writer
        if writer is not None:
            for topic, msgtype, stamp_ns, raw in pending:
                writer.write_raw(topic, msgtype, stamp_ns, raw)
        return len(pending)

    def count(self, topic: str) -> int:
        """Messages received on ``topic`` so far."""
        with self._lock:
            return len(self.stamps[topic])

    def wait_for_count(self, topic: str, count: int, timeout_s: float) -> bool:
        """Wait until ``topic`` has ``count`` messages or ``timeout_s`` passed; True if reached."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self.stamps[topic]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def destroy(self) -> None:
        """Destroy the subscriptions and write what is queued (call before closing the writer)."""
        with self._lock:
            for subscription in self._subscriptions:
                self.node.destroy_subscription(subscription)
            self._subscriptions.clear()
        self.flush()
        self.writer = None
