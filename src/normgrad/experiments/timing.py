"""Timing that is fair to everything timed: interleaved rounds, medians."""

from __future__ import annotations

import time

import numpy as np


def time_interleaved(fns: dict, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median ms of each function, called in turn each round (so load drifts hit all
    alike), after ``warmup`` rounds."""
    times = {name: [] for name in fns}
    for i in range(repeats + warmup):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}
