"""Fused kernels (Numba) and their NumPy path: equal to each other, to normgrad.functional
and to a float64 reference, on many shapes; same input checks as the functional API."""

from __future__ import annotations

import subprocess
import sys

import numba
import numpy as np
import pytest

import normgrad.functional as F
from normgrad import kernels as K


@pytest.fixture(params=["numba", "numpy"])
def backend(request):
    K.use_numpy(request.param == "numpy")
    assert K.backend() == request.param
    yield request.param
    K.use_numpy(False)


def _data(rng, shape, dtype, mean=3.0):
    C = shape[1] if len(shape) > 1 else shape[0]
    x = rng.normal(mean, 2.0, shape).astype(dtype)
    return x, rng.normal(1, 0.5, C), rng.normal(0, 0.5, C), rng.normal(size=shape).astype(dtype)


def _tol(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


BN_SHAPES = [(2, 1), (2, 5), (3, 7), (17, 33), (256, 64), (5, 3, 7), (2, 3, 1, 1), (3, 4, 5, 6), (4, 2, 3, 2, 2)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batchnorm_train_matches_functional(rng, backend, shape, dtype):
    x, gamma, beta, dy = _data(rng, shape, dtype)
    y, st = K.batchnorm_forward(x, gamma, beta, training=True)
    dx, dgamma, dbeta = K.batchnorm_backward(dy, x, gamma, st)
    mean, invstd = st.mean, st.invstd
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == x.shape
    # float64 reference through the functional API (spatial form covers any rank >= 3)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    if x.ndim == 2:
        ref, cache = F.batchnorm_forward(x64, gamma, beta, {"mode": "train"})
        rdx, rdg, rdb = F.batchnorm_backward_alt(dy64, cache)
    else:
        x4 = x64.reshape(x.shape[0], x.shape[1], -1, 1)
        ref, cache = F.spatial_batchnorm_forward(x4, gamma, beta, {"mode": "train"})
        rdx, rdg, rdb = F.spatial_batchnorm_backward(dy64.reshape(x4.shape), cache)
        ref, rdx = ref.reshape(shape), rdx.reshape(shape)
    scale = np.abs(dy64).max() * np.abs(gamma).max() * invstd.max()
    tol = _tol(dtype)
    np.testing.assert_allclose(y, ref, rtol=tol["rtol"], atol=tol["atol"] * np.abs(ref).max())
    np.testing.assert_allclose(dx, rdx, rtol=tol["rtol"], atol=tol["atol"] * scale)
    np.testing.assert_allclose(dgamma, rdg, rtol=1e-10 if dtype == np.float64 else 1e-5, atol=1e-9 * x.size)
    np.testing.assert_allclose(dbeta, rdb, rtol=1e-10 if dtype == np.float64 else 1e-5, atol=1e-9 * x.size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_eval_mode(rng, backend, dtype):
    x, gamma, beta, dy = _data(rng, (6, 4, 3), dtype)
    rm, rv = rng.normal(size=4), rng.uniform(0.5, 2, 4)
    y, st = K.batchnorm_forward(x, gamma, beta, training=False, running_mean=rm, running_var=rv)
    invstd = st.invstd
    np.testing.assert_array_equal(st.var, rv)
    b = (1, 4, 1)
    np.testing.assert_allclose(y, (x - rm.reshape(b)) / np.sqrt(rv.reshape(b) + 1e-5) * gamma.reshape(b)
                               + beta.reshape(b), **_tol(dtype))
    dx, dgamma, _ = K.batchnorm_backward(dy, x, gamma, st, training=False)
    np.testing.assert_allclose(dx, dy * (gamma * invstd).reshape(b), **_tol(dtype))
    xhat = (x - rm.reshape(b)) * invstd.reshape(b)
    np.testing.assert_allclose(dgamma, (dy * xhat).sum(axis=(0, 2)), rtol=1e-5)


GN_CASES = [((2, 4, 3, 3), 2), ((3, 6, 5), 3), ((1, 8, 2, 2), 8), ((2, 5, 1, 1), 1), ((4, 6, 7, 3), 6)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,G", GN_CASES)
def test_groupnorm_matches_functional(rng, backend, shape, G, dtype):
    x, gamma, beta, dy = _data(rng, shape, dtype)
    y, st = K.groupnorm_forward(x, gamma, beta, G)
    dx, dgamma, dbeta = K.groupnorm_backward(dy, x, gamma, G, st)
    x4 = x.astype(np.float64).reshape(shape[0], shape[1], -1, 1)
    ref, cache = F.spatial_groupnorm_forward(x4, gamma, beta, G, {})
    rdx, rdg, rdb = F.spatial_groupnorm_backward(dy.astype(np.float64).reshape(x4.shape), cache)
    tol = _tol(dtype)
    np.testing.assert_allclose(y, ref.reshape(shape), rtol=tol["rtol"], atol=tol["atol"] * np.abs(ref).max())
    np.testing.assert_allclose(dx, rdx.reshape(shape), rtol=tol["rtol"], atol=tol["atol"] * np.abs(rdx).max())
    np.testing.assert_allclose(dgamma, rdg, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dbeta, rdb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 2), (3, 1), (5, 7), (64, 300), (2, 3, 16)])
def test_layernorm_matches_functional(rng, backend, shape, dtype):
    D = shape[-1]
    x = rng.normal(3, 2, shape).astype(dtype)
    gamma, beta, dy = rng.normal(size=D), rng.normal(size=D), rng.normal(size=shape).astype(dtype)
    y, st = K.layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = K.layernorm_backward(dy, x, gamma, st)
    invstd = st.invstd
    x2, dy2 = x.reshape(-1, D).astype(np.float64), dy.reshape(-1, D).astype(np.float64)
    ref, cache = F.layernorm_forward(x2, gamma, beta, {})
    rdx, rdg, rdb = F.layernorm_backward(dy2, cache)
    tol = _tol(dtype)
    scale = np.abs(dy2).max() * np.abs(gamma).max() * invstd.max()
    np.testing.assert_allclose(y, ref.reshape(shape), rtol=tol["rtol"], atol=tol["atol"] * np.abs(ref).max())
    np.testing.assert_allclose(dx, rdx.reshape(shape), rtol=tol["rtol"], atol=tol["atol"] * scale)
    # float32 dgamma/dbeta terms are added 32 rows at a time in float32: the kernels' stated bound
    bound = 1e-6 + (32 * 2.0**-24 if dtype == np.float32 else 1e-12) * np.abs(dy2).sum()
    np.testing.assert_allclose(dgamma, rdg, rtol=1e-5, atol=bound * np.abs(cache.xhat).max())
    np.testing.assert_allclose(dbeta, rdb, rtol=1e-5, atol=bound)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(17, 33), (5, 3, 7), (3, 4, 5, 6)])
def test_split_batchnorm_over_shards_equals_whole_batch(rng, backend, shape, dtype):
    """Statistics and gradient sums from uneven shards, combined, give the fused result."""
    x, gamma, beta, dy = _data(rng, shape, dtype)
    y, st = K.batchnorm_forward(x, gamma, beta, training=True)
    dx, dgamma, dbeta = K.batchnorm_backward(dy, x, gamma, st)
    mean, invstd = st.mean, st.invstd
    cuts = [0, 1, 2, shape[0]]
    shards = [slice(a, b) for a, b in zip(cuts, cuts[1:])]
    counts = np.array([x[s].size // shape[1] for s in shards])
    stats = [K.batchnorm_stats(x[s]) for s in shards]  # the first shard is one row
    means = np.stack([m for m, _ in stats])
    m2 = np.stack([v * c for (_, v), c in zip(stats, counts)])
    g_mean = (counts[:, None] * means).sum(0) / counts.sum()
    g_var = (m2.sum(0) + (counts[:, None] * (means - g_mean) ** 2).sum(0)) / counts.sum()
    stat_tol = 1e-12 if dtype == np.float64 else 1e-6  # float32 data is centred in float32
    np.testing.assert_allclose(g_mean, mean, rtol=stat_tol, atol=stat_tol)
    np.testing.assert_allclose(1 / np.sqrt(g_var + 1e-5), invstd, rtol=stat_tol)
    ys = [K.batchnorm_normalize(x[s], mean, invstd, gamma, beta) for s in shards]
    # the same computation as the fused forward's second half, to an FMA's rounding
    np.testing.assert_allclose(np.concatenate(ys), y, rtol=0, atol=4 * np.finfo(dtype).eps * (1 + np.abs(y).max()))
    sums = np.sum([K.batchnorm_grad_sums(dy[s], x[s], mean) for s in shards], axis=0)
    # float32 terms are added FLUSH rows at a time in float32 before float64: the stated bound
    axes = tuple(i for i in range(x.ndim) if i != 1)
    xmu = x.astype(np.float64) - mean.reshape((1, -1) + (1,) * (x.ndim - 2))
    bound = 1e-10 if dtype == np.float64 else 2 * 32 * 2.0**-24
    assert np.all(np.abs(sums[0] - dbeta) <= 1e-10 + bound * np.abs(dy).sum(axis=axes))
    assert np.all(np.abs(sums[1] * invstd - dgamma) <= 1e-10 + bound * np.abs(dy * xmu).sum(axis=axes) * invstd)
    dxs = [K.batchnorm_grad_input(dy[s], x[s], mean, invstd, gamma, *sums, counts.sum()) for s in shards]
    tol = _tol(dtype)
    np.testing.assert_allclose(np.concatenate(dxs), dx, rtol=tol["rtol"], atol=tol["atol"] * np.abs(dx).max())


def test_numba_and_numpy_paths_agree(rng):
    x, gamma, beta, dy = _data(rng, (33, 10, 4, 3), np.float32)
    results = {}
    for name in ("numba", "numpy"):
        K.use_numpy(name == "numpy")
        y, st = K.batchnorm_forward(x, gamma, beta, training=True)
        g = K.groupnorm_forward(x, gamma, beta, 5)[0]
        results[name] = (y, *st, *K.batchnorm_backward(dy, x, gamma, st), g)
    K.use_numpy(False)
    for a, b in zip(results["numba"], results["numpy"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_non_contiguous_input(rng, backend):
    base = rng.normal(3, 2, (20, 12))
    x = base[::2, ::3]  # (10, 4), strided
    gamma, beta, dy = np.ones(4), np.zeros(4), rng.normal(size=(10, 4))
    y, st = K.batchnorm_forward(x, gamma, beta, training=True)
    y2, st2 = K.batchnorm_forward(np.ascontiguousarray(x), gamma, beta, training=True)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(K.batchnorm_backward(dy.T.copy().T, x, gamma, st)[0],
                                  K.batchnorm_backward(dy, x2 := np.ascontiguousarray(x), gamma, st2)[0])
    assert x2.flags.c_contiguous


def test_float32_large_mean(backend):
    rng = np.random.default_rng(5)
    x = (1e4 + rng.standard_normal((65536, 64))).astype(np.float32)
    y, _ = K.batchnorm_forward(x, np.ones(64), np.zeros(64), training=True)
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)
    assert np.abs(y - ref).max() < 1e-5


def test_out_arrays_are_used(rng, backend):
    x, gamma, beta, dy = _data(rng, (8, 3), np.float32)
    out, dout = np.empty_like(x), np.empty_like(x)
    y, st = K.batchnorm_forward(x, gamma, beta, training=True, out=out)
    dx, _, _ = K.batchnorm_backward(dy, x, gamma, st, out=dout)
    assert y is out and dx is dout
    with pytest.raises(ValueError, match="out must be an array of shape"):
        K.batchnorm_forward(x, gamma, beta, training=True, out=np.empty((8, 3)))  # float64
    with pytest.raises(ValueError, match="C-contiguous"):
        K.batchnorm_forward(x, gamma, beta, training=True, out=np.empty((3, 8), np.float32).T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm,shape", [("instance", (2, 3, 5)), ("instance", (3, 4, 6, 7)), ("instance", (1, 2, 1)),
                                        ("rms", (5, 7)), ("rms", (2, 3, 64)), ("rms", (4, 1))])
def test_instance_and_rms_match_functional(rng, backend, norm, shape, dtype):
    from normgrad.core.specs import SPECS

    spec = SPECS[norm]
    C = shape[-1] if spec.features_last else shape[1]
    x = rng.normal(3, 2, shape).astype(dtype)
    gamma, beta, dy = rng.normal(size=C), rng.normal(size=C), rng.normal(size=shape).astype(dtype)
    if norm == "rms":
        beta = np.zeros(C)
    y, st = K.norm_forward(spec, x, gamma, beta, eps=1e-5)
    dx, dgamma, dbeta = K.norm_backward(spec, dy, x, gamma, st)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    if norm == "instance":
        ref, cache = F.instancenorm_forward(x64, gamma, beta, {"eps": 1e-5})
        rdx, rdg, rdb = F.instancenorm_backward(dy64, cache)
    else:
        ref, cache = F.rmsnorm_forward(x64, gamma, {"eps": 1e-5})
        (rdx, rdg), rdb = F.rmsnorm_backward(dy64, cache), dy64.reshape(-1, C).sum(0)
    tol = _tol(dtype)
    scale = np.abs(dy64).max() * np.abs(gamma).max() * st.invstd.max()
    assert y.dtype == dx.dtype == dtype and st.mean.shape == st.invstd.shape
    if norm == "rms":
        assert not st.mean.any()  # uncentred: no mean
    np.testing.assert_allclose(y, ref, rtol=tol["rtol"], atol=tol["atol"] * np.abs(ref).max())
    np.testing.assert_allclose(dx, rdx, rtol=tol["rtol"], atol=tol["atol"] * scale)
    bound = 1e-6 + (32 * 2.0**-24 if dtype == np.float32 else 1e-12) * np.abs(dy64).sum()
    np.testing.assert_allclose(dgamma, rdg, rtol=1e-5, atol=bound * np.abs(cache.xhat).max())
    np.testing.assert_allclose(dbeta, rdb, rtol=1e-5, atol=bound)


@pytest.mark.parametrize("norm", ["batch", "layer", "group", "instance", "rms"])
def test_results_do_not_depend_on_thread_count(rng, norm):
    """Above the parallel threshold the kernels split work into a fixed number of
    chunks, so 1 and 2 threads add the same sums in the same order: equal to the bit."""
    shape = (1024, 96, 3)
    assert np.prod(shape) >= max(K.PARALLEL_MIN_SIZE.values())  # else both runs use one thread: nothing tested
    x, gamma, beta, dy = _data(rng, shape, np.float32)
    from normgrad.core.specs import SPECS

    forward = {"batch": lambda: K.batchnorm_forward(x, gamma, beta, training=True),
               "layer": lambda: K.layernorm_forward(x, gamma[:3], beta[:3]),
               "group": lambda: K.groupnorm_forward(x, gamma, beta, 8),
               "instance": lambda: K.norm_forward(SPECS["instance"], x, gamma, beta),
               "rms": lambda: K.norm_forward(SPECS["rms"], x, gamma[:3], beta[:3] * 0)}[norm]
    backward = {"batch": lambda st: K.batchnorm_backward(dy, x, gamma, st),
                "layer": lambda st: K.layernorm_backward(dy, x, gamma[:3], st),
                "group": lambda st: K.groupnorm_backward(dy, x, gamma, 8, st),
                "instance": lambda st: K.norm_backward(SPECS["instance"], dy, x, gamma, st),
                "rms": lambda st: K.norm_backward(SPECS["rms"], dy, x, gamma[:3], st)}[norm]
    results = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            y, st = forward()
            results.append((y, *st, *backward(st)))
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_environment_variable_forces_numpy():
    code = "from normgrad import kernels; print(kernels.backend())"
    for value, expected in (("numpy", "numpy"), ("", "numba")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             env={"NORMGRAD_KERNELS": value, "PATH": ""})
        assert out.stdout.strip() == expected, out.stderr


X = np.random.default_rng(0).normal(size=(4, 3))
G3 = np.ones(3)
BAD = {
    "x int": (lambda: K.batchnorm_forward(np.ones((4, 3), int), G3, G3, training=True), TypeError, "x must be a float32"),
    "x 1-D": (lambda: K.batchnorm_forward(np.ones(3), G3, G3, training=True), ValueError, "at least 2 dimensions"),
    "x empty": (lambda: K.layernorm_forward(np.ones((0, 3)), G3, G3), ValueError, "must not be empty"),
    "x NaN": (lambda: K.batchnorm_forward(np.where(X > 1, np.nan, X), G3, G3, training=True), ValueError, "x contains"),
    "x Inf eval": (lambda: K.batchnorm_forward(np.where(X > 1, np.inf, X), G3, G3, training=False,
                                               running_mean=G3, running_var=G3), ValueError, "x contains"),
    "x NaN group": (lambda: K.groupnorm_forward(np.full((2, 4, 2), np.nan), np.ones(4), np.ones(4), 2),
                    ValueError, "x contains"),
    "dy NaN": (lambda: K.batchnorm_backward(np.full((4, 3), np.nan), X, G3, (G3, G3, G3)), ValueError, "dy contains"),
    "dy shape": (lambda: K.batchnorm_backward(np.ones((3, 3)), X, G3, (G3, G3, G3)), ValueError, "dy must have x's shape"),
    "gamma shape": (lambda: K.batchnorm_forward(X, np.ones(4), G3, training=True), ValueError, r"gamma must have shape \(3,\)"),
    "one value per channel": (lambda: K.batchnorm_forward(X[:1], G3, G3, training=True), ValueError,
                              "more than 1 value per channel"),
    "eps 0": (lambda: K.batchnorm_forward(X, G3, G3, training=True, eps=0.0), ValueError, "eps must be"),
    "G not dividing": (lambda: K.groupnorm_forward(np.ones((2, 4, 2)), np.ones(4), np.ones(4), 3), ValueError,
                       "positive divisor"),
    "grad_input count 0": (lambda: K.batchnorm_grad_input(X, X, G3, G3, G3, G3, G3, 0), ValueError,
                           "count must be positive"),
    "grad_sums mean shape": (lambda: K.batchnorm_grad_sums(X, X, np.ones(4)), ValueError, r"mean must have shape"),
    "eval without stats": (lambda: K.batchnorm_forward(X, G3, G3, training=False), ValueError, "running_mean"),
    "negative running var": (lambda: K.batchnorm_forward(X, G3, G3, training=False, running_mean=G3,
                                                         running_var=-G3), ValueError, ">= 0"),
    "mean shape group": (lambda: K.groupnorm_backward(np.ones((2, 4, 2)), np.ones((2, 4, 2)), np.ones(4), 2,
                                                      (np.ones(2),) * 3), ValueError, r"mean must have shape \(2, 2\)"),
    "stats not a triple": (lambda: K.batchnorm_backward(X, X, G3, (G3, G3)), TypeError, "stats must be the NormStats"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_kernels_reject_bad_input(backend, case):
    call, error, message = BAD[case]
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_step_is_the_course_formula_in_the_arrays_dtype(rng, backend, dtype):
    w, dw, m = (rng.normal(size=(7, 33)).astype(dtype) for _ in range(3))
    v = rng.uniform(0.1, 2.0, size=w.shape).astype(dtype)
    lr, beta1, beta2, eps, t = 3e-3, 0.8, 0.99, 1e-6, 4
    next_w, next_m, next_v = K.adam_step(w, dw, m, v, lr, beta1, beta2, eps, t)
    # CS231n's adam, line by line, in NumPy (Python floats keep float32 arrays float32)
    ref_m = beta1 * m + (1 - beta1) * dw
    ref_v = beta2 * v + (1 - beta2) * dw**2
    ref_w = w - lr * (ref_m / (1 - beta1**t)) / (np.sqrt(ref_v / (1 - beta2**t)) + eps)
    assert next_w.dtype == next_m.dtype == next_v.dtype == dtype
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-15)
    for got, ref in ((next_m, ref_m), (next_v, ref_v), (next_w, ref_w)):
        np.testing.assert_allclose(got, ref, **tol)
    assert np.all(next_w != w)  # every weight moved


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_step_stores_subnormal_moments_as_zero(backend, dtype):
    tiny = np.finfo(dtype).tiny
    m = np.array([tiny / 4, -tiny * 0.9, tiny * 64, 0.0], dtype)  # two subnormal, one normal, zero
    v = np.array([tiny / 8, tiny * 64, tiny * 0.5, 1.0], dtype)
    w, dw = np.ones(4, dtype), np.zeros(4, dtype)  # a unit with no gradient: moments only decay
    _, next_m, next_v = K.adam_step(w, dw, m, v, 1e-3, 0.9, 0.999, 1e-8, 10)
    np.testing.assert_array_equal(next_m, np.array([0.0, 0.0, dtype(0.9) * m[2], 0.0], dtype))
    np.testing.assert_array_equal(next_v[[0, 2]], 0.0)
    assert next_v[1] == dtype(0.999) * v[1] and next_v[3] == dtype(0.999)
