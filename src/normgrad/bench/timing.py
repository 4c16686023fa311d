"""Timing that is fair to everything timed: interleaved rounds, medians.

Thread pools (Numba's and PyTorch's OpenMP workers, OpenBLAS's) keep spinning for a
while after their work, waiting for more: timed right after another library's call,
a function shares the cores with those spinners. So ``time_blocks`` lets the machine
settle before each block of consecutive calls, and interleaves the blocks of all the
functions round by round (drifts in machine load hit all alike)."""

from __future__ import annotations

import ctypes
import time

import numpy as np


def time_interleaved(fns: dict, repeats: int, warmup: int = 2, before: dict | None = None) -> dict[str, float]:
    """Median ms of each function, called in turn each round (so load drifts hit all
    alike), after ``warmup`` rounds. ``before[name]()``, if given, runs untimed just
    before each call of ``fns[name]`` (to set thread counts, say)."""
    times = {name: [] for name in fns}
    before = before or {}
    for i in range(repeats + warmup):
        for name, fn in fns.items():
            if name in before:
                before[name]()
            t = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def time_blocks(fns: dict, rounds: int = 5, block_s: float = 0.03, settle_s: float = 0.15,
                before: dict | None = None) -> dict[str, float]:
    """Median over ``rounds`` of each function's mean ms in a block of consecutive calls
    lasting about ``block_s``, each block started ``settle_s`` after the previous one
    ended. ``before[name]()`` runs untimed before each block (to set thread counts)."""
    before = before or {}
    per = {}
    for name, fn in fns.items():  # warm up, and size each block
        if name in before:
            before[name]()
        fn()
        t = time.perf_counter()
        fn()
        per[name] = int(np.clip(block_s / max(time.perf_counter() - t, 1e-7), 1, 10_000))
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            if name in before:
                before[name]()
            time.sleep(settle_s)
            t = time.perf_counter()
            for _ in range(per[name]):
                fn()
            times[name].append((time.perf_counter() - t) / per[name])
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def keep_freed_memory() -> bool:
    """glibc: serve large allocations from the heap and never give it back (no page
    faults for reallocated arrays), for the rest of the process. False where that
    cannot be set."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 1 << 30) and libc.mallopt(-1, (1 << 31) - 1))  # M_MMAP_, M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False
