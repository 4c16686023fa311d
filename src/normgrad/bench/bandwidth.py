"""The machine's memory bandwidth, measured STREAM-style: the reference for "of roofline".

A copy (b = a) and a triad (a = b + s * c) over float64 arrays far larger than the
last-level cache, on a fixed number of static chunks (so a thread count changes only
who does the work), best of several runs, at 1 and at 2 threads. Bandwidth counts the
bytes the kernel must move: copy 2 arrays (read one, write one), triad 3.
"""

from __future__ import annotations

import time

import numpy as np

_kernels = None


def _compiled():
    global _kernels
    if _kernels is None:
        from numba import njit, prange

        @njit(parallel=True, cache=True)
        def copy(src, dst, chunks):
            n = src.size
            for k in prange(chunks):
                for i in range(k * n // chunks, (k + 1) * n // chunks):
                    dst[i] = src[i]

        @njit(parallel=True, cache=True)
        def triad(a, b, c, s, chunks):
            n = a.size
            for k in prange(chunks):
                for i in range(k * n // chunks, (k + 1) * n // chunks):
                    a[i] = b[i] + s * c[i]

        _kernels = copy, triad
    return _kernels


def last_level_cache_bytes() -> int:
    """The largest cache the OS reports (bytes), or 32 MiB when it reports none."""
    import glob

    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
        sizes.append(int(text.rstrip("KMG")) * unit)
    return max(sizes, default=32 << 20)


def measure(thread_counts=(1, 2), nbytes: int | None = None, repeats: int = 5) -> dict[int, dict[str, float]]:
    """Best-of-``repeats`` GB/s of copy and triad per thread count, on arrays of ``nbytes``
    each (default: twice the last-level cache, at least 256 MiB, at most 1 GiB)."""
    import numba

    copy, triad = _compiled()
    if nbytes is None:
        nbytes = int(min(max(2 * last_level_cache_bytes(), 256 << 20), 1 << 30))
    n = nbytes // 8
    a, b, c = np.ones(n), np.empty(n), np.full(n, 2.0)
    saved = numba.get_num_threads()
    result = {}
    try:
        for threads in thread_counts:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            copy(a, b, 64)  # compile and touch every page
            triad(a, b, c, 3.0, 64)
            best = {"copy": np.inf, "triad": np.inf}
            for _ in range(repeats):
                t = time.perf_counter()
                copy(a, b, 64)
                best["copy"] = min(best["copy"], time.perf_counter() - t)
                t = time.perf_counter()
                triad(a, b, c, 3.0, 64)
                best["triad"] = min(best["triad"], time.perf_counter() - t)
            result[threads] = {"copy": 2 * a.nbytes / best["copy"] / 1e9, "triad": 3 * a.nbytes / best["triad"] / 1e9,
                               "array_mib": a.nbytes / 2**20}
    finally:
        numba.set_num_threads(saved)
    return result
