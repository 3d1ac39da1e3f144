"""What the node can tell about its inputs from stamps alone: gaps in the image stream.

ROS-free. Transport losses (best-effort QoS, full socket buffers) show up as image stamps that
step further than the camera period; :class:`GapCounter` learns the period as the median of the
recent steps, so it needs no configured frame rate.
"""
from __future__ import annotations

from collections import deque
import statistics

GAP_FACTOR = 1.5
"""A stamp step longer than this many median periods is a gap (one or more frames lost)."""
REORDER_PERIODS = 10
"""A stamp at most this many median periods behind the newest is a reordered or late message
(the stream goes on from the newest); further back, the stream restarted (a clock jump)."""


class GapCounter:
    """Counts gaps in a stream of increasing stamps (ns).

    Args:
        history: steps kept for the median period.
        warmup: steps needed before a gap can be called.
    """

    def __init__(self, history: int = 30, warmup: int = 5) -> None:
        self._steps: deque[int] = deque(maxlen=history)
        self._warmup = warmup
        self._last: int | None = None
        self.gaps = 0
        """Gaps seen so far."""

    def observe(self, stamp_ns: int) -> bool:
        """Take the next stamp; True when the step from the previous one is a gap.

        A stamp at or before the newest is no step: a duplicate, or a reordered or late
        message, is ignored; one further back than :data:`REORDER_PERIODS` periods (a clock
        jump back) restarts the stream from there.
        """
        stamp_ns, last = int(stamp_ns), self._last
        if last is not None and stamp_ns <= last:
            period = statistics.median(self._steps) if self._steps else 0
            if last - stamp_ns > REORDER_PERIODS * period:
                self._last = stamp_ns
            return False
        self._last = stamp_ns
        if last is None:
            return False
        step = stamp_ns - last
        gap = (len(self._steps) >= self._warmup
               and step > GAP_FACTOR * statistics.median(self._steps))
        self._steps.append(step)
        self.gaps += int(gap)
        return gap
