"""Benchmarks run by `gssim bench`: throughput and a ratio against a reference measured
in the same run."""
import statistics
import time
from typing import Callable


def median_time(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs (after one warm-up)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
