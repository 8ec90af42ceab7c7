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


def preparation_times(surfels, sensor, grid, repeats: int) -> tuple[float, float]:
    """Median seconds of ``prepare_surfels`` on the native path and on the torch reference
    path (no gradient), runs alternating so both see the same machine load."""
    import torch

    from gssim.render import pipeline

    times: dict[bool, list[float]] = {True: [], False: []}
    saved = pipeline.USE_NATIVE_PREP
    try:
        with torch.no_grad():
            for k in range(repeats + 1):
                for use_native in (True, False):
                    pipeline.USE_NATIVE_PREP = use_native
                    t0 = time.perf_counter()
                    pipeline.prepare_surfels(surfels, sensor, grid)
                    if k:  # the first round warms up
                        times[use_native].append(time.perf_counter() - t0)
    finally:
        pipeline.USE_NATIVE_PREP = saved
    return statistics.median(times[True]), statistics.median(times[False])
