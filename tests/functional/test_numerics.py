"""Numerics: float32 accuracy at large means, dtypes, no in-place changes, memory."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

import normgrad.functional as F
from normgrad.core.stats import moments
from tests.reference import random_case, reference_norm


@pytest.fixture(scope="module")
def large_mean_x32():
    """float32 data with mean 1e4 and std 1, N = 65536, D = 64."""
    rng = np.random.default_rng(1234)
    return (1e4 + rng.standard_normal((65536, 64))).astype(np.float32)


def test_float32_large_mean_forward_matches_float64(large_mean_x32):
    x = large_mean_x32
    rng = np.random.default_rng(0)
    gamma = rng.normal(1, 0.5, 64).astype(np.float32)
    beta = rng.normal(0, 0.5, 64).astype(np.float32)
    out, _ = F.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    assert out.dtype == np.float32
    ref = reference_norm(x, gamma.astype(np.float64), beta.astype(np.float64), axes=0)
    assert np.abs(out - ref).max() < 1e-3  # the bound
    # and the centring really is float64-exact: without the two-piece mean it is ~5e-4
    assert np.abs(out - ref).max() < 1e-5


def test_naive_variance_fails_on_the_same_data(large_mean_x32):
    """The test above can fail: E[x^2] - E[x]^2 in float32 is off by far more than 1e-3."""
    x = large_mean_x32
    mu = x.mean(0, dtype=np.float32)
    var = np.maximum((x * x).mean(0, dtype=np.float32) - mu * mu, 0)
    naive = (x - mu) / np.sqrt(var + np.float32(1e-5))
    ref = reference_norm(x, 1.0, 0.0, axes=0)
    assert np.abs(naive - ref).max() > 0.1


def test_float32_large_mean_backward_matches_float64(large_mean_x32):
    x = large_mean_x32[:8192]
    rng = np.random.default_rng(1)
    gamma = rng.normal(1, 0.5, 64).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    _, c32 = F.batchnorm_forward(x, gamma, np.zeros(64, np.float32), {"mode": "train"})
    _, c64 = F.batchnorm_forward(x.astype(np.float64), gamma.astype(np.float64), np.zeros(64), {"mode": "train"})
    for backward in (F.batchnorm_backward, F.batchnorm_backward_alt):
        g32, g64 = backward(dout, c32), backward(dout.astype(np.float64), c64)
        for a, b in zip(g32, g64):
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


@pytest.mark.parametrize("axes,shape", [
    ((0,), (4096, 64)), ((1,), (64, 4096)), ((0, 2, 3), (64, 8, 8, 8)), ((2, 3, 4), (4, 2, 8, 16, 16)),
])
def test_moments_float32_large_mean(axes, shape):
    rng = np.random.default_rng(2)
    x = (-3e4 + 0.5 * rng.standard_normal(shape)).astype(np.float32)
    mean, var, _ = moments(x, axes)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=axes, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(var, x64.var(axis=axes, keepdims=True), rtol=1e-5)


@pytest.mark.parametrize("name", ["layernorm", "spatial_batchnorm", "groupnorm"])
def test_other_norms_float32_large_mean(name):
    rng = np.random.default_rng(3)
    if name == "layernorm":
        x = (1e4 + rng.standard_normal((64, 4096))).astype(np.float32)
        out, _ = F.layernorm_forward(x, np.ones(4096, np.float32), np.zeros(4096, np.float32), {})
        ref = reference_norm(x, 1.0, 0.0, axes=1)
    elif name == "spatial_batchnorm":
        x = (1e4 + rng.standard_normal((64, 8, 16, 16))).astype(np.float32)
        out, _ = F.spatial_batchnorm_forward(x, np.ones(8, np.float32), np.zeros(8, np.float32), {"mode": "train"})
        ref = reference_norm(x, 1.0, 0.0, axes=(0, 2, 3))
    else:
        x = (1e4 + rng.standard_normal((8, 16, 16, 16))).astype(np.float32)
        out, _ = F.spatial_groupnorm_forward(x, np.ones(16, np.float32), np.zeros(16, np.float32), 4, {})
        ref = reference_norm(x.reshape(8, 4, 4, 16, 16), 1.0, 0.0, axes=(2, 3, 4)).reshape(x.shape)
    assert out.dtype == np.float32
    assert np.abs(out - ref).max() < 1e-5


def test_float32_squares_that_overflow_are_rescaled(rng):
    """std 1e20 in float32: (x - mean)**2 overflows float32, the variance must not."""
    x = (1e20 * rng.standard_normal((64, 3))).astype(np.float32)
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    bn_param = {"mode": "train", "running_mean": np.zeros(3), "running_var": np.ones(3)}  # float64
    out, _ = F.batchnorm_forward(x, gamma, beta, bn_param)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, reference_norm(x, 1.0, 0.0, axes=0), atol=1e-5)
    # float32 running statistics cannot hold a variance of 1e40: a clear error, not inf
    with pytest.raises(ValueError, match=r"running_var'\] would overflow float32"):
        F.batchnorm_forward(x, gamma, beta, {"mode": "train"})


@pytest.mark.parametrize("eps", [1e-8, 1e-3, 0.5])
def test_eps_is_used(rng, eps):
    x, gamma, beta, _ = random_case(rng, (6, 3), (3,), std=0.1)
    out, _ = F.batchnorm_forward(x, gamma, beta, {"mode": "train", "eps": eps})
    np.testing.assert_allclose(out, reference_norm(x, gamma, beta, axes=0, eps=eps), rtol=1e-12, atol=1e-12)
    out, _ = F.layernorm_forward(x, gamma, beta, {"eps": eps})
    np.testing.assert_allclose(out, reference_norm(x, gamma, beta, axes=1, eps=eps), rtol=1e-12, atol=1e-12)


def test_running_stats_promote_to_the_wider_dtype(rng):
    bn_param = {"mode": "train", "running_mean": np.zeros(3, np.float32), "running_var": np.ones(3, np.float32)}
    F.batchnorm_forward(rng.normal(1e6, 1, (8, 3)), np.ones(3), np.zeros(3), bn_param)
    assert bn_param["running_mean"].dtype == np.float64
    np.testing.assert_allclose(bn_param["running_mean"], 1e5, rtol=1e-5)
    bn_param = {"mode": "train", "running_mean": np.zeros(3), "running_var": np.ones(3)}
    F.batchnorm_forward(rng.normal(size=(8, 3)).astype(np.float32), np.ones(3), np.zeros(3), bn_param)
    assert bn_param["running_var"].dtype == np.float64


def test_numpy_scalars_and_0d_arrays_as_parameters(rng):
    x = rng.normal(size=(2, 4, 2, 2))
    a, _ = F.spatial_groupnorm_forward(x, np.ones(4), np.zeros(4), np.int64(2), {"eps": np.float32(1e-5)})
    b, _ = F.spatial_groupnorm_forward(x, np.ones(4), np.zeros(4), np.array(2), {"eps": np.array(1e-5)})
    c, _ = F.spatial_groupnorm_forward(x, np.ones(4), np.zeros(4), 2, {"eps": 1e-5})
    np.testing.assert_allclose(a, c, rtol=1e-6)
    np.testing.assert_array_equal(b, c)
    F.batchnorm_forward(x[:, :, 0, 0], np.ones(4), np.zeros(4), {"mode": "train", "momentum": np.array(0.5)})


def test_cache_keeps_its_own_gamma(rng):
    """Updating gamma in place between forward and backward must not change dx."""
    x, gamma, beta, dout = random_case(rng, (6, 3), (3,))
    _, cache = F.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    before = F.batchnorm_backward_alt(dout, cache)[0]
    gamma -= 0.5
    np.testing.assert_array_equal(F.batchnorm_backward_alt(dout, cache)[0], before)


CASES = {
    "batchnorm": lambda x, g, b: F.batchnorm_forward(x, g, b, {"mode": "train"}),
    "layernorm": lambda x, g, b: F.layernorm_forward(x, g, b, {}),
    "spatial_batchnorm": lambda x, g, b: F.spatial_batchnorm_forward(x, g, b, {"mode": "train"}),
    "groupnorm": lambda x, g, b: F.spatial_groupnorm_forward(x, g, b, 2, {}),
}
BACKWARDS = {
    "batchnorm": [F.batchnorm_backward, F.batchnorm_backward_alt],
    "layernorm": [F.layernorm_backward],
    "spatial_batchnorm": [F.spatial_batchnorm_backward],
    "groupnorm": [F.spatial_groupnorm_backward],
}
SHAPES = {"batchnorm": ((6, 4), (4,)), "layernorm": ((6, 4), (4,)),
          "spatial_batchnorm": ((3, 4, 2, 2), (4,)), "groupnorm": ((3, 4, 2, 2), (1, 4, 1, 1))}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_and_inputs_untouched(rng, name, dtype):
    x, gamma, beta, dout = random_case(rng, *SHAPES[name], dtype=dtype)
    saved = [a.copy() for a in (x, gamma, beta, dout)]
    out, cache = CASES[name](x, gamma, beta)
    assert out.dtype == dtype and out.shape == x.shape
    xhat = cache.xhat.copy()
    for backward in BACKWARDS[name]:
        dx, dgamma, dbeta = backward(dout, cache)
        assert dx.dtype == dtype and dx.shape == x.shape
        assert dgamma.dtype == dtype and dgamma.shape == gamma.shape
        assert dbeta.dtype == dtype and dbeta.shape == beta.shape
    for before, after in zip(saved, (x, gamma, beta, dout)):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(xhat, cache.xhat)


def test_running_stats_arrays_are_replaced_not_mutated(rng):
    rm, rv = np.zeros(3), np.ones(3)
    bn_param = {"mode": "train", "running_mean": rm, "running_var": rv}
    F.batchnorm_forward(rng.normal(5, 1, (4, 3)), np.ones(3), np.zeros(3), bn_param)
    np.testing.assert_array_equal(rm, 0)
    np.testing.assert_array_equal(rv, 1)
    assert bn_param["running_mean"] is not rm and bn_param["running_mean"].any()


def test_float64_params_with_float32_x_keep_float32(rng):
    x = rng.normal(size=(5, 3)).astype(np.float32)
    out, cache = F.batchnorm_forward(x, np.ones(3), np.zeros(3), {"mode": "train"})
    assert out.dtype == np.float32
    dx, dgamma, _ = F.batchnorm_backward_alt(np.ones_like(x), cache)
    assert dx.dtype == np.float32 and dgamma.dtype == np.float64


@pytest.mark.parametrize("layout", ["strided", "transposed", "fortran"])
def test_non_contiguous_input(rng, layout):
    base = rng.normal(2, 3, (12, 10))
    x = {"strided": base[::2, ::2], "transposed": base.T[:5, :6].T, "fortran": np.asfortranarray(base)}[layout]
    D = x.shape[1]
    gamma, beta, dout = rng.normal(size=D), rng.normal(size=D), rng.normal(size=x.shape)
    out, cache = F.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    out_c, cache_c = F.batchnorm_forward(np.ascontiguousarray(x), gamma, beta, {"mode": "train"})
    np.testing.assert_allclose(out, out_c, rtol=1e-13, atol=1e-13)
    for a, b in zip(F.batchnorm_backward_alt(dout, cache), F.batchnorm_backward_alt(dout, cache_c)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_closed_form_cache_holds_one_array_of_x_size(rng, dtype):
    """The cache keeps xhat plus per-feature vectors, not the staged graph's
    intermediates (xmu, sq, xhat, gammax: four (N, D) arrays), measured with tracemalloc."""
    N, D = 4096, 256
    x, gamma, beta, _ = random_case(rng, (N, D), (D,), dtype=dtype)
    x_bytes = x.nbytes
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out, cache = F.batchnorm_forward(x, gamma, beta, {"mode": "train"})
        del out
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    per_feature = 32 * D * 8  # generous: a few dozen float64 vectors of length D
    assert x_bytes <= held <= x_bytes + per_feature + 16384, (held, x_bytes)
    assert cache.nbytes <= x_bytes + per_feature
    # the forward itself never needs more than x's size three times over (xmu/xhat, its square, out)
    assert peak <= 3 * x_bytes + per_feature + 65536, (peak, x_bytes)
