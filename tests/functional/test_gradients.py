"""Analytic backward passes against numeric gradients, and staged against closed form."""

from __future__ import annotations

import numpy as np
import pytest

import normgrad.functional as F
from normgrad.gradcheck import eval_numerical_gradient_array, rel_error
from tests.reference import random_case


def _numeric(forward, x, gamma, beta, dout):
    """Numeric (dx, dgamma, dbeta) of sum(forward(x, gamma, beta) * dout).

    The five-point stencil at h = 1e-3 is accurate to ~1e-12 here, so the
    bounds below measure the analytic gradient, not the numeric one's noise.
    """

    def numeric(f, a):
        return eval_numerical_gradient_array(f, a, dout, h=1e-3, order=4)

    return (
        numeric(lambda a: forward(a, gamma, beta)[0], x),
        numeric(lambda a: forward(x, a, beta)[0], gamma),
        numeric(lambda a: forward(x, gamma, a)[0], beta),
    )


def _errors(forward, backward, x, gamma, beta, dout):
    _, cache = forward(x, gamma, beta)
    analytic = backward(dout, cache)
    numeric = _numeric(forward, x, gamma, beta, dout)
    for a, n in zip(analytic, numeric):
        assert a.shape == n.shape
    return [rel_error(a, n) for a, n in zip(analytic, numeric)]


def bn_train(x, g, b):
    return F.batchnorm_forward(x, g, b, {"mode": "train"})


def bn_test(x, g, b):
    rm = np.linspace(-1, 1, x.shape[1])
    rv = np.linspace(0.5, 2, x.shape[1])
    return F.batchnorm_forward(x, g, b, {"mode": "test", "running_mean": rm, "running_var": rv})


def ln(x, g, b):
    return F.layernorm_forward(x, g, b, {})


@pytest.mark.parametrize("backward", [F.batchnorm_backward, F.batchnorm_backward_alt])
@pytest.mark.parametrize("shape", [(3, 1), (4, 5), (10, 3), (7, 8)])
@pytest.mark.parametrize("mode", ["train", "test"])
def test_batchnorm_gradients(rng, backward, shape, mode):
    x, gamma, beta, dout = random_case(rng, shape, shape[1:])
    forward = bn_train if mode == "train" else bn_test
    errors = _errors(forward, backward, x, gamma, beta, dout)
    assert max(errors) < 1e-8, errors


@pytest.mark.parametrize("shape", [(4, 5), (3, 10), (6, 3)])
def test_layernorm_gradients(rng, shape):
    x, gamma, beta, dout = random_case(rng, shape, shape[1:])
    errors = _errors(ln, F.layernorm_backward, x, gamma, beta, dout)
    assert max(errors) < 1e-8, errors


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 2, 1, 1), (1, 4, 2, 3)])
def test_spatial_batchnorm_gradients(rng, shape):
    x, gamma, beta, dout = random_case(rng, shape, shape[1:2])

    def forward(a, g, b):
        return F.spatial_batchnorm_forward(a, g, b, {"mode": "train"})

    errors = _errors(forward, F.spatial_batchnorm_backward, x, gamma, beta, dout)
    assert max(errors) < 1e-7, errors


@pytest.mark.parametrize(
    "shape,G,gamma_shape",
    [((2, 6, 4, 5), 2, (1, 6, 1, 1)), ((2, 6, 3, 3), 3, (6,)), ((3, 4, 2, 2), 1, (4,)), ((2, 4, 2, 3), 4, (1, 4, 1, 1))],
)
def test_groupnorm_gradients(rng, shape, G, gamma_shape):
    x, gamma, beta, dout = random_case(rng, shape, gamma_shape)

    def forward(a, g, b):
        return F.spatial_groupnorm_forward(a, g, b, G, {})

    errors = _errors(forward, F.spatial_groupnorm_backward, x, gamma, beta, dout)
    assert max(errors) < 1e-7, errors


def _normwise(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("shape", [(3, 1), (3, 7), (16, 3), (100, 50), (1000, 4)])
@pytest.mark.parametrize("mode", ["train", "test"])
def test_staged_equals_closed_form(rng, shape, mode):
    """Staged and closed form agree to 1e-12 relative in float64.

    Elementwise (CS231n's rel_error) on the small shapes; on the large ones an
    entry of dx that cancels to ~1e-4 of its terms exists by chance, where any
    two float64 orderings differ by ~1e-12 of that entry, so there the
    normwise relative error is the meaningful measure (and is ~1e-15).
    """
    x, gamma, beta, dout = random_case(rng, shape, shape[1:], mean=10.0, std=3.0)
    forward = bn_train if mode == "train" else bn_test
    _, cache = forward(x, gamma, beta)
    staged = F.batchnorm_backward(dout, cache)
    closed = F.batchnorm_backward_alt(dout, cache)
    for s, c in zip(staged, closed):
        assert s.shape == c.shape and s.dtype == c.dtype
        assert _normwise(s, c) < 1e-12
        if x.size <= 64:
            assert rel_error(s, c) < 1e-12


@pytest.mark.parametrize("D", [1, 6])
def test_two_rows_staged_closed_form_and_numeric_agree(rng, D):
    """With N = 2, xhat is +-1 up to eps and dx is of order eps: both backward
    forms lose relative precision to cancellation, so compare on the scale of
    dout * gamma / std instead of elementwise."""
    x, gamma, beta, dout = random_case(rng, (2, D), (D,))
    _, cache = bn_train(x, gamma, beta)
    scale = np.abs(dout * gamma * cache.invstd.reshape(D)).max()
    staged, closed = F.batchnorm_backward(dout, cache), F.batchnorm_backward_alt(dout, cache)
    numeric = _numeric(bn_train, x, gamma, beta, dout)
    for s, c, n in zip(staged, closed, numeric):
        np.testing.assert_allclose(s, c, rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(c, n, rtol=0, atol=1e-9 * scale)


def test_staged_equals_closed_form_float32(rng):
    x, gamma, beta, dout = random_case(rng, (512, 16), (16,), dtype=np.float32)
    _, cache = bn_train(x, gamma, beta)
    for s, c in zip(F.batchnorm_backward(dout, cache), F.batchnorm_backward_alt(dout, cache)):
        assert s.dtype == np.float32
        np.testing.assert_allclose(s, c, rtol=1e-4, atol=1e-5 * np.abs(c).max())


def test_backward_uses_the_batch_statistics_not_a_detached_copy(rng):
    """A backward that forgets the mean/variance paths differs from the closed form."""
    x, gamma, beta, dout = random_case(rng, (8, 4), (4,))
    _, cache = bn_train(x, gamma, beta)
    dx, _, _ = F.batchnorm_backward_alt(dout, cache)
    direct_only = dout * gamma / np.sqrt(x.var(0) + 1e-5)
    assert rel_error(dx, direct_only) > 1e-2
    # and dx sums to zero over the batch: shifting x by a constant changes nothing
    np.testing.assert_allclose(dx.sum(0), 0, atol=1e-12)
