"""Which implementation of a kernel runs: Numba (parallel or serial) or NumPy.

Numba kernels (compiled on first use and cached on disk) when Numba is installed;
otherwise, or when forced, the same kernels in NumPy (``_numpy``). Force the NumPy
path with the environment variable ``NORMGRAD_KERNELS=numpy`` or ``use_numpy(True)``;
``backend()`` says which is in use.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading

from . import _numpy

try:
    from . import _numba
except ImportError:  # Numba not installed: the NumPy path only
    _numba = None

_force_numpy = os.environ.get("NORMGRAD_KERNELS", "").lower() == "numpy"


def use_numpy(flag: bool = True) -> None:
    """Force (or stop forcing) the NumPy path for every kernel call."""
    global _force_numpy
    _force_numpy = bool(flag)


def backend() -> str:
    """'numba' or 'numpy': the implementation the next call will use."""
    return "numpy" if _force_numpy or _numba is None else "numba"


# Calls on fewer elements than these run the serial variant on the calling thread, in
# one chunk: a parallel region costs more than it saves there, and in a training loop
# the OpenMP workers and BLAS's threads spin-wait after each call and fight over the
# cores. Measured on a 2-core machine with benchmarks/threshold.py: the parallel
# variants win from about 2**17 elements (batch norm) and 2**15 (layer norm) when timed
# alone; the thresholds sit a little higher, for the spin-waits of a real training loop.
PARALLEL_MIN_SIZE = {"channel": 1 << 17, "row": 1 << 16}
# Inside a PyTorch model, torch's own OpenMP workers spin on the cores after each of its
# parallel operations, so a parallel kernel started then shares its cores with them: a
# (256, 512) batch norm between two torch matrix products ran 1.7x slower in parallel
# than on the calling thread. ``sharing_cores_with_torch()`` (normgrad.torch's operators
# run in it) raises the thresholds to this.
PARALLEL_MIN_SIZE_BESIDE_TORCH = 1 << 20
NCHUNKS = 16  # work items of a parallel loop: fixed, so sums do not depend on the thread count
_beside_torch = threading.local()


@contextlib.contextmanager
def sharing_cores_with_torch():
    """Calls in this block go parallel only from ``PARALLEL_MIN_SIZE_BESIDE_TORCH``
    elements (this thread only)."""
    before = getattr(_beside_torch, "on", False)
    _beside_torch.on = True
    try:
        yield
    finally:
        _beside_torch.on = before


def kernel(name: str, size: int):
    """(kernel, chunks) for ``name`` on ``size`` elements. The chunks depend on the size
    only, never on the thread count or the variant, so a result is the same on 1 thread
    or 32, beside torch or not."""
    chunked = size >= PARALLEL_MIN_SIZE[name.split("_", 1)[0]]
    chunks = NCHUNKS if chunked else 1
    if _force_numpy or _numba is None:
        return getattr(_numpy, name), chunks
    if not chunked:
        return _numba.SERIAL[name], 1
    if getattr(_beside_torch, "on", False) and size < PARALLEL_MIN_SIZE_BESIDE_TORCH:
        return functools.partial(_on_one_thread, _numba.PARALLEL[name]), NCHUNKS
    return _numba.PARALLEL[name], NCHUNKS


def _on_one_thread(kernel, *args):
    """The parallel variant (same compiled code, same chunks, so the same sums) run by
    the calling thread alone: Numba's thread count is per calling thread."""
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(threads)
