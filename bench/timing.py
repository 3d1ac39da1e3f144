"""Timing helper shared by the benchmark scripts in this folder."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def median_ms(function: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``function()`` in milliseconds after two warm-up calls."""
    function()
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        function()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(times)
