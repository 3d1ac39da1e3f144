"""The node's diagnostics bookkeeping: counters, per-period rates, stage latencies, level.

ROS-free: the node turns :meth:`NodeStats.report` into a ``diagnostic_msgs/DiagnosticStatus``
(:class:`DiagnosticLevel` has that message's level values).
"""
from __future__ import annotations

from collections import Counter
import enum
import threading
import time
from typing import Mapping, Sequence

import numpy as np

DEGRADING_COUNTERS = ('frames_without_radar', 'input_gaps')
"""Counters that mark a period degraded, besides every ``skipped_*`` and ``radar_unused_*``."""
STAGES = ('decode', 'preprocess', 'engine', 'postprocess', 'publish', 'total', 'age')
"""Timed stages of a published frame (ms); ``age`` = receive clock - image stamp at publish."""


class DiagnosticLevel(enum.IntEnum):
    """``diagnostic_msgs/DiagnosticStatus`` levels (the message carries them as one byte)."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


class NodeStats:
    """Counters since start plus per-period rates and stage latencies (ms); thread-safe.

    Args:
        provider: the ONNX Runtime execution provider, reported as ``provider``.
        radar_topics: the configured radar topics, watched for silence.
        radar_timeout_s: a radar topic silent longer than this (s) makes the level WARN.
    """

    def __init__(self, provider: str, radar_topics: Sequence[str] = (),
                 radar_timeout_s: float = 1.0) -> None:
        self.provider = provider
        self._lock = threading.Lock()
        self._totals: Counter[str] = Counter()
        self._period: Counter[str] = Counter()
        self._samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
        self._period_start_ns = time.monotonic_ns()
        self._radar_topics = tuple(radar_topics)
        self._radar_timeout_ns = int(radar_timeout_s * 1e9)
        # Last receive time per radar topic; the start counts as "heard" for a topic never seen.
        self._radar_heard_ns = [self._period_start_ns] * len(self._radar_topics)
        self._radar_seen = [False] * len(self._radar_topics)

    def radar_received(self, index: int) -> None:
        """Record a sweep received on radar topic ``index`` (any sweep, valid or not)."""
        now = time.monotonic_ns()
        with self._lock:
            self._radar_heard_ns[index] = now
            self._radar_seen[index] = True
            self._period[f'radar_received {self._radar_topics[index]}'] += 1

    def count(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to counter ``key``; returns its new total."""
        with self._lock:
            self._totals[key] += amount
            self._period[key] += amount
            return self._totals[key]

    def frame_done(self, timings_ms: Mapping[str, float]) -> None:
        """Record one published frame with its stage times (ms; keys from :data:`STAGES`)."""
        with self._lock:
            self._totals['published'] += 1
            self._period['published'] += 1
            for stage, value in timings_ms.items():
                if stage in self._samples:
                    self._samples[stage].append(float(value))

    def report(self, sync: Mapping[str, int], *,
               new_period: bool) -> tuple[DiagnosticLevel, str, dict[str, str]]:
        """(level, message, key/values) of the period so far.

        Keys: ``provider``, ``rate_hz`` (published), ``input_rate_hz`` (images), per stage
        ``<stage>_ms`` (mean) and ``<stage>_ms_max``, per radar topic ``<topic> age_s`` (since
        its last sweep, or since start) and ``<topic> rate_hz``, every node counter
        (``published``, ``skipped_*``, ``radar_*``, ``frames_without_radar``, ``input_gaps``)
        and the frame assembler's counters (``dropped_superseded``, ...). Level: WARN without
        input images; ERROR when nothing was published and frames or radar sweeps were
        skipped; WARN when degraded (published, but something was skipped, a frame went out
        without radar, images were lost, or a radar topic has been silent for longer than
        ``radar_timeout_s``: the message names it); else OK. ``new_period`` starts a new
        window.
        """
        with self._lock:
            now = time.monotonic_ns()
            seconds = max((now - self._period_start_ns) / 1e9, 1e-9)
            values = {'provider': self.provider,
                      'rate_hz': f'{self._period["published"] / seconds:.2f}',
                      'input_rate_hz': f'{self._period["image_received"] / seconds:.2f}'}
            for stage, samples in self._samples.items():
                values[f'{stage}_ms'] = f'{np.mean(samples):.2f}' if samples else 'nan'
                values[f'{stage}_ms_max'] = f'{max(samples):.2f}' if samples else 'nan'
            silent = []
            for index, topic in enumerate(self._radar_topics):
                age_ns = now - self._radar_heard_ns[index]
                values[f'{topic} age_s'] = (f'{age_ns / 1e9:.2f}' if self._radar_seen[index]
                                            else 'never')
                values[f'{topic} rate_hz'] = (
                    f'{self._period[f"radar_received {topic}"] / seconds:.2f}')
                if age_ns > self._radar_timeout_ns:
                    silent.append(f'radar {topic} silent for {age_ns / 1e9:.1f} s')
            values.update({key: str(total) for key, total in sorted(self._totals.items())})
            values.update({key: str(value) for key, value in sync.items()})
            problems = sorted(key for key, amount in self._period.items()
                              if amount and (key.startswith(('skipped_', 'radar_unused_'))
                                             or key in DEGRADING_COUNTERS))
            problems += silent
            published = self._period['published']
            images = self._period['image_received']
            if new_period:
                self._period.clear()
                self._samples = {stage: [] for stage in STAGES}
                self._period_start_ns = now
        if not images:
            return DiagnosticLevel.WARN, 'no input images', values
        if not published:
            if problems:
                return DiagnosticLevel.ERROR, 'no depth output: ' + ', '.join(problems), values
            return (DiagnosticLevel.WARN, 'no depth output yet (waiting for radar or inference)',
                    values)
        if problems:
            return DiagnosticLevel.WARN, 'degraded: ' + ', '.join(problems), values
        return DiagnosticLevel.OK, f'publishing at {values["rate_hz"]} Hz', values
