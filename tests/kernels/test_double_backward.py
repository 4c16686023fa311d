"""The fused double backward (``kernels.norm_double_backward``): Numba equal to NumPy, both
equal to a central difference of the first-order backward in float64, and the Numba
result independent of the thread count."""

from __future__ import annotations

import numpy as np
import pytest

from normgrad import kernels as K
from normgrad.core.specs import SPECS

CASES = [("batch", (7, 5), None), ("batch", (4, 3, 6), None), ("batch", (3, 4, 5, 2), None),
         ("layer", (6, 9), None), ("layer", (2, 3, 8), None), ("group", (3, 6, 5), 3), ("group", (2, 4, 3, 3), 2),
         ("instance", (3, 4, 7), None), ("rms", (5, 8), None), ("rms", (2, 3, 16), None)]


def _problem(rng, norm, shape, G, dtype=np.float64):
    """x, gamma, its training stats, dy, and the upstream gradients a, ga, gb (random, never all ones)."""
    spec = SPECS[norm]
    C = shape[-1] if spec.features_last else shape[1]
    x = rng.normal(1.5, 2.0, shape).astype(dtype)
    gamma = rng.normal(1, 0.5, C)
    _, stats = K.norm_forward(spec, x, gamma, np.zeros(C), G=G)
    dy, a = (rng.normal(size=shape).astype(dtype) for _ in range(2))
    return spec, x, gamma, stats, dy, a, rng.normal(size=C), rng.normal(size=C)


def _first_order(spec, x, gamma, dy, G):
    """norm_backward with the statistics recomputed from x (as a function of dy, x, gamma)."""
    _, stats = K.norm_forward(spec, x, gamma, np.zeros(gamma.size), G=G)
    return K.norm_backward(spec, dy, x, gamma, stats, G=G)


@pytest.mark.parametrize("norm,shape,G", CASES)
def test_equals_a_central_difference_of_the_backward(rng, norm, shape, G):
    spec, x, gamma, stats, dy, a, ga, gb = _problem(rng, norm, shape, G)
    ddy, dx, dgamma = K.norm_double_backward(spec, dy, x, gamma, stats, a, ga, gb, G=G)
    u, v = rng.normal(size=shape), rng.normal(size=shape)  # a random direction in (dy, x, gamma)
    w = rng.normal(size=gamma.size)

    def loss(t):
        dxt, dgt, dbt = _first_order(spec, x + t * v, gamma + t * w, dy + t * u, G)
        return (a * dxt).sum() + ga @ dgt + gb @ dbt

    h = 1e-5
    numeric = (loss(h) - loss(-h)) / (2 * h)
    analytic = (ddy * u).sum() + (dx * v).sum() + dgamma @ w
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6 * np.abs(numeric).max())
    # each gradient on its own, along its coordinate directions: the three are not mixed up
    for i in [0, x.size // 2, x.size - 1]:
        e = np.zeros(x.size)
        e[i] = 1.0
        e = e.reshape(shape)
        for grad, arg in ((ddy, "dy"), (dx, "x")):
            def f(t, arg=arg):
                shifted = {"dy": dy, "x": x, **{arg: (dy if arg == "dy" else x) + t * e}}
                dxt, dgt, dbt = _first_order(spec, shifted["x"], gamma, shifted["dy"], G)
                return (a * dxt).sum() + ga @ dgt + gb @ dbt
            np.testing.assert_allclose(grad.reshape(-1)[i], (f(h) - f(-h)) / (2 * h), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm,shape,G", CASES)
def test_numba_equals_numpy(rng, norm, shape, G, dtype):
    spec, x, gamma, stats, dy, a, ga, gb = _problem(rng, norm, shape, G, dtype)
    K.use_numpy(True)
    try:
        ref = K.norm_double_backward(spec, dy, x, gamma, stats, a, ga, gb, G=G)
    finally:
        K.use_numpy(False)
    got = K.norm_double_backward(spec, dy, x, gamma, stats, a, ga, gb, G=G)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, np.abs(r).max()))
    assert got[0].dtype == got[1].dtype == dtype and got[2].dtype == np.float64


@pytest.mark.parametrize("norm", ["batch", "layer", "group", "instance", "rms"])
def test_missing_upstream_gradients_are_zero(rng, norm):
    shape, G = ((4, 6, 3), 2)
    spec, x, gamma, stats, dy, a, _, _ = _problem(rng, norm, shape, G)
    zeros = np.zeros(gamma.size)
    for got, want in zip(K.norm_double_backward(spec, dy, x, gamma, stats, a, G=G),
                         K.norm_double_backward(spec, dy, x, gamma, stats, a, zeros, zeros, G=G)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("norm", ["batch", "layer", "group"])
def test_results_do_not_depend_on_thread_count(rng, norm):
    """Above the parallel threshold: fixed chunks, so the same sums in the same order."""
    import numba

    shape = (1024, 96, 3) if norm != "layer" else (4096, 96)
    spec, x, gamma, stats, dy, a, ga, gb = _problem(rng, norm, shape, 4, np.float32)
    before = numba.get_num_threads()
    runs = []
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            runs.append(K.norm_double_backward(spec, dy, x, gamma, stats, a, ga, gb, G=4))
    finally:
        numba.set_num_threads(before)
    for one, many in zip(*runs):
        np.testing.assert_array_equal(one, many)


def test_refuses_bad_input(rng):
    spec, x, gamma, stats, dy, a, ga, gb = _problem(rng, "batch", (4, 3), None)
    with pytest.raises(ValueError, match="a must have x's shape"):
        K.norm_double_backward(spec, dy, x, gamma, stats, a[:2], ga, gb)
    with pytest.raises(ValueError, match="ga"):
        K.norm_double_backward(spec, dy, x, gamma, stats, a, ga[:2], gb)
