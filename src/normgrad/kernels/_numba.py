"""The Numba kernels, gathered: ``PARALLEL[name]`` and ``SERIAL[name]`` of both families
(``_numba_channel``: statistics across the batch; ``_numba_row``: statistics per
sample; ``_numba_last``: per sample on channels-last memory), and the fused Adam step. Imported only when Numba is installed (see
``__init__.py``); every kernel compiles on its first call (and is cached on disk),
not at import.
"""

from __future__ import annotations

import numpy as np

from . import _numba_channel, _numba_last, _numba_row
from ._numba_base import helper

PARALLEL = {**_numba_channel.PARALLEL, **_numba_row.PARALLEL, **_numba_last.PARALLEL}
SERIAL = {**_numba_channel.SERIAL, **_numba_row.SERIAL, **_numba_last.SERIAL}


@helper
def adam_step(w, dw, m, v, beta1, beta2, epsilon, step, vscale, tiny, next_w, next_m, next_v):
    """One Adam update in one pass (flat arrays of one dtype; scalars in that dtype, so
    float32 stays float32 as in NumPy): m' = beta1 m + (1 - beta1) dw, v' likewise with
    dw**2, w' = w - step * m' / (sqrt(v' * vscale) + epsilon), step = lr / (1 - beta1**t),
    vscale = 1 / (1 - beta2**t).

    Moments below ``tiny`` (the dtype's smallest normal number) are stored as 0: a unit
    whose gradient stays 0 would otherwise keep m' = beta1 * m at the smallest subnormal
    forever (it rounds back to itself), and subnormal arithmetic is ~100x slower on x86."""
    one = beta1 / beta1
    zero = one - one
    for i in range(w.size):
        g = dw[i]
        mi = beta1 * m[i] + (one - beta1) * g
        vi = beta2 * v[i] + (one - beta2) * (g * g)
        if abs(mi) < tiny:
            mi = zero
        if vi < tiny:
            vi = zero
        next_m[i] = mi
        next_v[i] = vi
        next_w[i] = w[i] - step * mi / (np.sqrt(vi * vscale) + epsilon)
