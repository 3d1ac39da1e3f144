"""Timing and report helpers shared by the benchmark scripts in this folder."""
from __future__ import annotations

import json
from pathlib import Path
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


def write_report(path: str | Path | None, report: dict[str, Any]) -> None:
    """Write ``report`` plus the machine it ran on (CPU model as ``lscpu`` names it) as JSON.

    The figures the docs quote come from such files under ``docs/bench/``
    (``test/test_bench_docs.py`` checks the quotes). Nothing is written for ``path`` None.
    """
    from xdrcdepth_ros.benchmark import machine_info

    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, 'machine': machine_info()}, indent=2) + '\n')
