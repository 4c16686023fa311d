"""The kernels' work splitting and accumulation, where a refactor breaks them silently.

- Chunk boundaries: above the parallel threshold every kernel splits its rows into
  NCHUNKS chunks; at sizes whose rows do not divide evenly every norm still equals a
  float64 reference.
- Accumulation: float32 data with a large mean keeps float64-grade statistics and
  gradient sums on large batches (a float32 running sum would lose ~1e-4 of the
  variance and whole units of sum(dy)), on both backends.
"""

from __future__ import annotations

import numpy as np
import pytest

from normgrad import kernels as K
from normgrad.core.specs import SPECS

AWKWARD = {  # every row count leaves a remainder when split into NCHUNKS chunks
    "batch (N, C)": ("batch", (1000, 200), None),
    "batch (N, C, L)": ("batch", (37, 24, 150), None),
    "layer": ("layer", (1000, 131), None),
    "group": ("group", (47, 12, 12, 10), 4),
    "instance": ("instance", (19, 33, 11, 11), None),
    "rms": ("rms", (999, 67), None),
}


@pytest.fixture(params=["numba", "numpy"])
def backend(request):
    K.use_numpy(request.param == "numpy")
    yield request.param
    K.use_numpy(False)


def _reference(spec, x, gamma, beta, dy, G):
    """y, dx, dgamma, dbeta in float64 NumPy from the spec's view."""
    view = spec.view(x.shape, G)
    xv, dyv = x.astype(np.float64).reshape(view), dy.astype(np.float64).reshape(view)
    axes = spec.reduce_axes
    mean = xv.mean(axis=axes, keepdims=True) if spec.centered else 0.0
    var = np.square(xv - mean).mean(axis=axes, keepdims=True)
    invstd = 1.0 / np.sqrt(var + 1e-5)
    xhat = (xv - mean) * invstd
    g, b = gamma.reshape(1, view[1], view[2], 1), beta.reshape(1, view[1], view[2], 1)
    dxhat = dyv * g
    dx = dxhat - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True)
    if spec.centered:
        dx -= dxhat.mean(axis=axes, keepdims=True)
    return [(xhat * g + b).reshape(x.shape), (dx * invstd).reshape(x.shape),
            (dyv * xhat).sum(axis=(0, 3)).reshape(-1), dyv.sum(axis=(0, 3)).reshape(-1)]


@pytest.mark.parametrize("case", list(AWKWARD))
def test_awkward_sizes_on_the_parallel_path(case, backend):
    norm, shape, G = AWKWARD[case]
    spec = SPECS[norm]
    kind = "channel" if spec.across == "batch" else "row"
    assert np.prod(shape) >= K.PARALLEL_MIN_SIZE[kind]  # else one chunk: nothing tested
    rows = shape[0] if spec.across == "batch" else spec.view(shape, G)[0] * spec.view(shape, G)[1]
    assert rows % K.NCHUNKS  # a remainder to place
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, shape)
    C = spec.channels(shape)
    gamma, beta, dy = rng.normal(size=C), rng.normal(size=C), rng.normal(size=shape)
    y, stats = K.norm_forward(spec, x, gamma, beta, G=G)
    got = [y, *K.norm_backward(spec, dy, x, gamma, stats, G=G)]
    for a, b in zip(got, _reference(spec, x, gamma, beta, dy, G)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("norm, shape, var_rtol", [
    ("batch", (1 << 20, 4), 2e-7),  # x - K and its square added over 32 rows in float32 first (FLUSH)
    ("batch", (4096, 4, 64), 1e-9), ("layer", (4, 1 << 18), 1e-9),
    ("layer", (1 << 16, 8), 2e-7)])  # 8 values a row: the NumPy path centres each in float32
def test_float32_accumulates_at_float64_precision(norm, shape, var_rtol, backend):
    spec = SPECS[norm]
    rng = np.random.default_rng(2)
    x = rng.normal(1e3, 1.0, shape).astype(np.float32)
    dy = rng.normal(0.5, 1.0, shape).astype(np.float32)
    C = spec.channels(shape)
    gamma, beta = rng.normal(size=C), rng.normal(size=C)
    y, stats = K.norm_forward(spec, x, gamma, beta)
    _, dgamma, dbeta = K.norm_backward(spec, dy, x, gamma, stats)
    view = spec.view(shape)
    x64, dy64 = x.astype(np.float64).reshape(view), dy.astype(np.float64).reshape(view)
    mean = x64.mean(axis=spec.reduce_axes, keepdims=True)
    var = x64.var(axis=spec.reduce_axes, keepdims=True)
    np.testing.assert_allclose(stats.var.reshape(-1), var.reshape(-1), rtol=var_rtol)
    xhat = (x64 - mean) / np.sqrt(var + 1e-5)
    want_dbeta, want_dgamma = dy64.sum(axis=(0, 3)).reshape(-1), (dy64 * xhat).sum(axis=(0, 3)).reshape(-1)
    np.testing.assert_allclose(dbeta, want_dbeta, atol=1e-7 * np.abs(dy64).sum(axis=(0, 3)).max())
    np.testing.assert_allclose(dgamma, want_dgamma, atol=1e-7 * np.abs(dy64 * xhat).sum(axis=(0, 3)).max())
