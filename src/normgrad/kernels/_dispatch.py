"""Which implementation of a kernel runs: Numba (parallel or serial) or NumPy.

Numba kernels (compiled on first use and cached on disk) when Numba is installed;
otherwise, or when forced, the same kernels in NumPy (``_numpy``). Force the NumPy
path with the environment variable ``NORMGRAD_KERNELS=numpy`` or ``use_numpy(True)``;
``backend()`` says which is in use.
"""

from __future__ import annotations

import os

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
# one chunk: a parallel region costs more than it saves there. Measured on a 2-core
# machine with benchmarks/threshold.py: the parallel variants win from about 2**17
# elements (batch norm) and 2**15 (layer norm) when timed alone; the thresholds sit a
# little higher, for the spin-waits of a real training loop.
#
# Inside a PyTorch model the same thresholds hold (benchmarks/threads.py: one training
# step of four models at 2 threads, kernels serial vs parallel from these thresholds vs
# parallel only from 2**20, interleaved in one process): torch's OpenMP workers keep both
# cores busy through a torch.nn step (they spin-wait between operations), so a kernel
# shares its cores with them whichever variant runs; the serial and parallel policies
# came out within 0.05x of each other, the larger threshold behind both, and Numba's
# workqueue threading layer 0.1-0.3x behind its OpenMP one. Numba's OpenMP runtime is a
# separate copy of libgomp from torch's: its thread count never changes torch's.
PARALLEL_MIN_SIZE = {"channel": 1 << 17, "row": 1 << 16, "last": 1 << 16}
NCHUNKS = 16  # work items of a parallel loop: fixed, so sums do not depend on the thread count


def kernel(name: str, size: int):
    """(kernel, chunks) for ``name`` on ``size`` elements. The chunks depend on the size
    only, never on the thread count or the variant, so a result is the same on 1 thread
    or 32."""
    chunked = size >= PARALLEL_MIN_SIZE[name.split("_", 1)[0]]
    chunks = NCHUNKS if chunked else 1
    if _force_numpy or _numba is None:
        return getattr(_numpy, name), chunks
    if not chunked:
        return _numba.SERIAL[name], 1
    return _numba.PARALLEL[name], NCHUNKS
