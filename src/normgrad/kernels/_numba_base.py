"""What every Numba kernel family shares: compiler flags, the float64 draining of
blocked partial sums, and the two variants each kernel is built in.

Each family module (``_numba_channel``, ``_numba_row``) defines its kernels as
factories ``make(loop)`` that return a plain Python function whose chunk loop runs
over ``loop(nchunks)``. ``variants`` compiles each factory twice: ``loop = prange``
with ``parallel=True`` (threads over the chunks) and ``loop = range`` serially (on
the calling thread, for small calls). Both add the same partial sums in the same
order, so a result does not depend on the variant or the thread count. The loop is
a closure variable, so Numba's disk cache keys the two variants apart.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# reassoc lets float sums vectorize (their order changes, not their precision);
# no flags that assume away NaN/Inf or change rounding of single operations.
FLAGS = {"reassoc", "contract"}
FLUSH = 32  # rows whose terms are added in x's dtype before they join the float64 totals

helper = njit(cache=True, nogil=True, fastmath=FLAGS)
# a per-row or per-plane step of a kernel: inlined into the kernel's loop (a call per row
# costs more than a short row's work, and blocks vectorization across the call)
inlined = njit(cache=True, nogil=True, fastmath=FLAGS, inline="always")


@helper
def drain(total1, total2, block1, block2):
    """total1 += block1, total2 += block2 (float64 totals), then zero the blocks."""
    for j in range(total1.size):
        total1[j] += block1[j]
        total2[j] += block2[j]
        block1[j] = 0.0
        block2[j] = 0.0


@helper
def drain_rows(total, block):
    """total += block, then zero the block: (S, P) float64 totals, (S, P) blocks in x's dtype."""
    for s in range(total.shape[0]):
        for j in range(total.shape[1]):
            total[s, j] += block[s, j]
            block[s, j] = 0.0


@helper
def column_sums(parts):
    """Sum of the rows of ``parts`` (nchunks, P), chunk by chunk in order: a serial
    helper, so a parallel kernel's final reduction does not depend on the thread count."""
    total = np.zeros(parts.shape[1])
    for k in range(parts.shape[0]):
        for j in range(parts.shape[1]):
            total[j] += parts[k, j]
    return total


def variants(factories) -> tuple[dict, dict]:
    """(parallel, serial): dicts name -> compiled kernel, one entry per factory.

    The kernels compile on their first call (and are cached on disk), not here."""
    parallel, serial = {}, {}
    for name, make in factories.items():
        parallel[name] = njit(parallel=True, cache=True, nogil=True, fastmath=FLAGS)(make(prange))
        serial[name] = njit(cache=True, nogil=True, fastmath=FLAGS)(make(range))
    return parallel, serial
