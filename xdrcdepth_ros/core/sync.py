"""Pair camera images with radar sweeps by header stamp (ROS-free, clock passed in).

:class:`FrameAssembler` is fed from subscription callbacks (``add_image``, ``add_radar``) and
drained by a worker (``take``). It never reads a clock: every call passes ``now_ns``, the
receiving node's time, which only drives the radar wait timeout. Matching uses header stamps.

Policy, for an image stamped ``t`` and radar topic ``i`` whose sweeps are stamped ``r``
(corrected ``r' = r + radar_offsets_ns[i]``):

* A sweep matches when ``|r' - t| <= slop_ns``. ``RadarPolicy.NEAREST`` (default) keeps the one
  closest to ``t`` (ties: the earlier); ``RadarPolicy.ALL`` keeps every match, oldest first, for
  callers that accumulate sweeps. A sweep may serve several images (camera faster than radar).
* Topic ``i`` is settled for the image once a sweep that rules out a better match has arrived
  (NEAREST: ``r' >= t``; ALL: ``r' > t + slop_ns``), or when the topic is silent: nothing
  admitted from it for more than ``max_age_ns`` of receive time (``now_ns``), counted from
  the first message after start-up or a reset when it was never heard. So a dead radar stops
  delaying frames after ``max_age_ns``, while the first images after start-up, a reset or a
  jump forward (next bag scene) still wait for their sweeps, whichever transport delivers
  first. An image is ready when every topic is settled or ``wait_ns`` passed since it arrived. NEAREST thus holds an image for up to one radar period plus the
  radar's transport latency; set ``wait_ns`` above that sum.
* ``take`` returns the newest ready image; older images are dropped (``dropped_superseded``):
  latest frame wins, so a slow consumer never builds up latency, and output stamps strictly
  increase. Images older than the last output stamp are dropped as stale when they arrive
  (an equal stamp counts as a duplicate).
* A message older than the newest stamp seen (any sensor) by more than ``max_age_ns`` is
  stale; by more than ``clock_jump_ns`` it is a clock jump back (a bag loop, a restarted
  driver): all buffers are cleared, ``clock_resets`` counts it, and the message starts afresh.
* Duplicate stamps on one topic keep the first message (later ones are counted, not stored).
* Buffers hold at most ``buffer_size`` messages per sensor; the oldest goes first.

Thread safety: every public method takes an internal lock for a short, allocation-light
critical section and never calls back into user code, so callbacks and a worker may share one
assembler without extra locking.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, fields
import enum
import threading
from typing import Any

from .errors import SyncConfigError


class RadarPolicy(str, enum.Enum):
    """Which of a topic's sweeps inside the slop window go with an image."""

    NEAREST = 'nearest'
    """The sweep closest in time (at most one per topic)."""
    ALL = 'all'
    """Every sweep inside the window, oldest first (for multi-sweep accumulation)."""


DEFAULT_SLOP_NS = 50_000_000
"""Default pairing window (the node's ``sync_slop``; the table in ``core.config`` reads it)."""
DEFAULT_BUFFER_SIZE = 10
"""Default messages kept per sensor (``sync_buffer_size``)."""
DEFAULT_MAX_AGE_NS = 1_000_000_000
"""Default staleness limit (``sync_max_age_s``)."""
DEFAULT_WAIT_NS = 100_000_000
"""Default wait of an image for its radar (``sync_wait_s``)."""


@dataclass(frozen=True)
class SyncConfig:
    """Frame assembler settings; all durations are integer nanoseconds.

    Attributes:
        slop_ns: largest ``|radar stamp + offset - image stamp|`` that still pairs.
        radar_offsets_ns: one entry per radar topic, added to that topic's stamps (a radar whose
            clock runs 20 ms behind the camera gets +20 ms); its length is the topic count.
        buffer_size: messages kept per sensor.
        max_age_ns: messages older than the newest stamp seen minus this are dropped as stale.
        wait_ns: how long (in ``now_ns`` time) an image waits for radar before it is released.
        require_radar: drop an image for which no radar topic had a matching sweep (counted in
            ``dropped_no_radar``); otherwise it is released with empty radar tuples.
        clock_jump_ns: a stamp this far behind the newest one resets the assembler.
        radar_policy: see :class:`RadarPolicy`.
    """

    slop_ns: int = DEFAULT_SLOP_NS
    radar_offsets_ns: tuple[int, ...] = (0,)
    buffer_size: int = DEFAULT_BUFFER_SIZE
    max_age_ns: int = DEFAULT_MAX_AGE_NS
    wait_ns: int = DEFAULT_WAIT_NS
    require_radar: bool = False
    clock_jump_ns: int = 2_000_000_000
    radar_policy: RadarPolicy = RadarPolicy.NEAREST

    def __post_init__(self) -> None:
        offsets = tuple(self.radar_offsets_ns)
        object.__setattr__(self, 'radar_offsets_ns', offsets)
        values = {name: getattr(self, name) for name in
                  ('slop_ns', 'buffer_size', 'max_age_ns', 'wait_ns', 'clock_jump_ns')}
        values.update({f'radar_offsets_ns[{i}]': offset for i, offset in enumerate(offsets)})
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise SyncConfigError(f'{name} must be an int (nanoseconds or a count), '
                                      f'got {value!r}')
        if self.slop_ns < 0 or self.wait_ns < 0:
            raise SyncConfigError(f'slop_ns and wait_ns must be >= 0, got {self.slop_ns} and '
                                  f'{self.wait_ns}')
        if self.buffer_size < 1:
            raise SyncConfigError(f'buffer_size must be >= 1, got {self.buffer_size}')
        if self.max_age_ns < self.slop_ns:
            raise SyncConfigError(f'max_age_ns ({self.max_age_ns}) must be >= slop_ns '
                                  f'({self.slop_ns}), or matching sweeps would be stale')
        if self.clock_jump_ns <= self.max_age_ns:
            raise SyncConfigError(f'clock_jump_ns ({self.clock_jump_ns}) must be > max_age_ns '
                                  f'({self.max_age_ns})')
        if self.require_radar and not offsets:
            raise SyncConfigError('require_radar needs at least one radar topic '
                                  '(radar_offsets_ns is empty)')
        try:
            object.__setattr__(self, 'radar_policy', RadarPolicy(self.radar_policy))
        except ValueError as err:
            raise SyncConfigError(f'radar_policy must be one of '
                                  f'{[p.value for p in RadarPolicy]}, got {self.radar_policy!r}'
                                  ) from err

    @property
    def num_radars(self) -> int:
        """Number of radar topics."""
        return len(self.radar_offsets_ns)


@dataclass(frozen=True)
class RadarItem:
    """A buffered radar message: its original header stamp (ns, no offset) and payload."""

    stamp_ns: int
    item: Any


@dataclass(frozen=True)
class SyncedFrame:
    """An image with its radar sweeps.

    Attributes:
        stamp_ns: image header stamp, ns.
        image: the image payload as given to ``add_image``.
        radars: one tuple per radar topic, in topic order; empty when that topic had no match.
        received_ns: ``now_ns`` when the image arrived (for latency diagnostics).
    """

    stamp_ns: int
    image: Any
    radars: tuple[tuple[RadarItem, ...], ...]
    received_ns: int = 0


@dataclass(frozen=True)
class SyncStats:
    """Cumulative counters (``reset()`` keeps them). Image fields count images only.

    For images: ``images_in == frames_out + dropped_superseded + dropped_no_radar +
    dropped_stale + dropped_overflow + duplicates + dropped_reset + pending_images``.
    """

    images_in: int = 0
    radars_in: int = 0
    frames_out: int = 0
    frames_incomplete: int = 0
    """Frames released by the wait timeout with some topic unmatched (included in frames_out)."""
    dropped_superseded: int = 0
    dropped_no_radar: int = 0
    dropped_stale: int = 0
    dropped_overflow: int = 0
    duplicates: int = 0
    dropped_reset: int = 0
    """Images discarded by a clock jump or ``reset()``."""
    radars_stale: int = 0
    radars_overflow: int = 0
    radar_duplicates: int = 0
    clock_resets: int = 0
    pending_images: int = 0
    """Images buffered now (a gauge, not a counter)."""


@dataclass
class _Image:
    stamp_ns: int
    item: Any
    received_ns: int


class FrameAssembler:
    """Pairs images with radar sweeps; see the module docstring for the policy.

    Args:
        config: validated settings; ``config.num_radars`` fixes the radar topic indices.
    """

    def __init__(self, config: SyncConfig) -> None:
        if not isinstance(config, SyncConfig):
            raise SyncConfigError(f'config must be a SyncConfig, got {type(config).__name__}')
        self.config = config
        self._lock = threading.Lock()
        self._counts = {f.name: 0 for f in fields(SyncStats) if f.name != 'pending_images'}
        self._clear()

    def _clear(self) -> None:
        self._images: list[_Image] = []
        # Per topic, sorted by corrected stamp: (corrected stamp, RadarItem).
        self._radars: list[list[tuple[int, RadarItem]]] = [[] for _ in
                                                            self.config.radar_offsets_ns]
        self._topic_newest: list[int | None] = [None] * self.config.num_radars
        # Receive times (now_ns): last admitted sweep per topic, first message since the reset.
        self._topic_received: list[int | None] = [None] * self.config.num_radars
        self._first_received: int | None = None
        self._newest: int | None = None
        self._last_out: int | None = None

    # ------------------------------------------------------------------------- intake

    def _admit(self, stamp_ns: int) -> bool:
        """Clock-jump and staleness check for a corrected stamp; True when it may be kept."""
        if self._newest is not None and stamp_ns < self._newest - self.config.clock_jump_ns:
            self._counts['clock_resets'] += 1
            self._counts['dropped_reset'] += len(self._images)
            self._clear()
        if self._newest is not None and stamp_ns < self._newest - self.config.max_age_ns:
            return False
        self._newest = stamp_ns if self._newest is None else max(self._newest, stamp_ns)
        return True

    def add_image(self, stamp_ns: int, item: Any, now_ns: int) -> bool:
        """Buffer an image stamped ``stamp_ns`` (header stamp, ns) that arrived at ``now_ns``.

        Returns:
            True when it was buffered; False when dropped (stale, duplicate stamp, or at or
            before the last output stamp).
        """
        stamp_ns, now_ns = int(stamp_ns), int(now_ns)
        with self._lock:
            self._counts['images_in'] += 1
            admitted = self._admit(stamp_ns)
            if self._first_received is None:
                self._first_received = now_ns
            if not admitted:
                self._counts['dropped_stale'] += 1
                return False
            stamps = [image.stamp_ns for image in self._images]
            if stamp_ns == self._last_out or stamp_ns in stamps:
                self._counts['duplicates'] += 1
                return False
            if self._last_out is not None and stamp_ns < self._last_out:
                self._counts['dropped_stale'] += 1
                return False
            self._images.insert(bisect.bisect(stamps, stamp_ns),
                                _Image(stamp_ns, item, now_ns))
            if len(self._images) > self.config.buffer_size:
                del self._images[0]
                self._counts['dropped_overflow'] += 1
            return True

    def add_radar(self, index: int, stamp_ns: int, item: Any, now_ns: int) -> bool:
        """Buffer a sweep of radar topic ``index`` stamped ``stamp_ns`` (header stamp, ns).

        ``now_ns`` (receive time) only tells whether the topic is alive (see the module notes);
        matching uses stamps.

        Returns:
            True when it was buffered; False when dropped (stale or duplicate stamp).

        Raises:
            IndexError: ``index`` is not a configured radar topic.
        """
        if not 0 <= index < self.config.num_radars:
            raise IndexError(f'radar index {index} out of range: {self.config.num_radars} radar '
                             'topics are configured')
        stamp_ns, now_ns = int(stamp_ns), int(now_ns)
        corrected = stamp_ns + self.config.radar_offsets_ns[index]
        with self._lock:
            self._counts['radars_in'] += 1
            if not self._admit(corrected):
                self._counts['radars_stale'] += 1
                return False
            if self._first_received is None:
                self._first_received = now_ns
            self._topic_received[index] = now_ns
            buffer = self._radars[index]
            position = bisect.bisect_left(buffer, corrected, key=lambda entry: entry[0])
            if position < len(buffer) and buffer[position][0] == corrected:
                self._counts['radar_duplicates'] += 1
                return False
            buffer.insert(position, (corrected, RadarItem(stamp_ns, item)))
            newest = self._topic_newest[index]
            self._topic_newest[index] = corrected if newest is None else max(newest, corrected)
            if len(buffer) > self.config.buffer_size:
                del buffer[0]
                self._counts['radars_overflow'] += 1
            return True

    # ------------------------------------------------------------------------- output

    def _settled(self, index: int, stamp_ns: int, now_ns: int) -> bool:
        newest = self._topic_newest[index]
        if newest is not None:
            if self.config.radar_policy is RadarPolicy.NEAREST:
                if newest >= stamp_ns:
                    return True
            elif newest > stamp_ns + self.config.slop_ns:
                return True
        heard = self._topic_received[index]
        if heard is None:
            heard = self._first_received
        # Silent topic: nothing to wait for (a clock running backwards also ends the wait).
        return heard is None or not 0 <= now_ns - heard <= self.config.max_age_ns

    def _matches(self, index: int, stamp_ns: int) -> tuple[RadarItem, ...]:
        slop = self.config.slop_ns
        window = [(abs(corrected - stamp_ns), corrected, radar)
                  for corrected, radar in self._radars[index]
                  if abs(corrected - stamp_ns) <= slop]
        if not window:
            return ()
        if self.config.radar_policy is RadarPolicy.NEAREST:
            return (min(window, key=lambda entry: entry[:2])[2],)
        return tuple(radar for _, _, radar in window)

    def take(self, now_ns: int) -> SyncedFrame | None:
        """The newest ready frame, or None; older buffered images are dropped and counted.

        Args:
            now_ns: current time of the clock that stamped ``add_*``'s ``now_ns``.
        """
        now_ns = int(now_ns)
        config = self.config
        with self._lock:
            for position in range(len(self._images) - 1, -1, -1):
                image = self._images[position]
                waited = now_ns - image.received_ns
                # A clock that ran backwards (sim time restarted) ends the wait.
                timed_out = waited >= config.wait_ns or waited < 0
                settled = all(self._settled(i, image.stamp_ns, now_ns)
                              for i in range(config.num_radars))
                if not (settled or timed_out):
                    continue
                radars = tuple(self._matches(i, image.stamp_ns)
                               for i in range(config.num_radars))
                if config.require_radar and not any(radars):
                    del self._images[position]
                    self._counts['dropped_no_radar'] += 1
                    continue
                self._counts['dropped_superseded'] += position
                self._counts['frames_out'] += 1
                if not settled and not all(radars):
                    self._counts['frames_incomplete'] += 1
                del self._images[:position + 1]
                self._last_out = image.stamp_ns
                self._prune_radar(image.stamp_ns - config.slop_ns)
                return SyncedFrame(image.stamp_ns, image.item, radars, image.received_ns)
            return None

    def _prune_radar(self, floor_ns: int) -> None:
        """Forget sweeps no future image (stamped after the last output) can match."""
        for buffer in self._radars:
            cut = bisect.bisect_left(buffer, floor_ns, key=lambda entry: entry[0])
            del buffer[:cut]

    def next_timeout_ns(self) -> int | None:
        """Earliest ``now_ns`` at which a buffered image's radar wait ends, or None.

        A worker may sleep until then (or until new data arrives) instead of polling.
        """
        with self._lock:
            if not self._images:
                return None
            return min(image.received_ns for image in self._images) + self.config.wait_ns

    # ------------------------------------------------------------------------- state

    @property
    def stats(self) -> SyncStats:
        """A snapshot of the counters."""
        with self._lock:
            return SyncStats(**self._counts, pending_images=len(self._images))

    def reset(self) -> None:
        """Forget every buffered message and stamp history (counters are kept)."""
        with self._lock:
            self._counts['dropped_reset'] += len(self._images)
            self._clear()
