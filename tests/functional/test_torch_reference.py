"""Forward and backward against PyTorch's F.batch_norm / layer_norm / group_norm + autograd.

Tolerances: float64 rtol 1e-10, float32 rtol 1e-4, each with an absolute floor
of the same size times the scale of the quantity: the largest reference value,
and for gradients the size of the terms summed into them (max |dout * gamma /
std| for dx, max |sum dout| for dgamma, dbeta). Entries that cancel to near zero
have no meaningful relative error: with N = 2 batch norm, or D = 1 layer norm,
the exact dx is ~eps or 0 and both libraries return round-off there.
Data here has a moderate mean: PyTorch's float32 2-D path is inaccurate for
large means (see test_numerics.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import normgrad.functional as F
from tests.reference import random_case

RTOL = {np.float64: 1e-10, np.float32: 1e-4}


def _close(ours, ref, dtype, scale=0.0):
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else ref
    assert ours.dtype == dtype
    assert ours.shape == ref.shape
    rtol = RTOL[dtype]
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * max(np.abs(ref).max(), scale))


def _torch_grads(fn, x, gamma, beta, dout):
    """(out, dx, dgamma, dbeta) of fn by PyTorch autograd."""
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    out = fn(xt, gt, bt)
    out.backward(torch.tensor(dout))
    return out, xt.grad, gt.grad, bt.grad


def _compare(ours_fwd, ours_bwd, torch_fn, x, gamma, beta, dout):
    dtype = x.dtype.type
    out, cache = ours_fwd(x, gamma, beta)
    grads = ours_bwd(dout, cache)
    t_out, *t_grads = _torch_grads(torch_fn, x, gamma, beta, dout)
    _close(out, t_out, dtype)
    dout_w = dout.reshape(cache.xhat.shape)
    dx_scale = np.abs(dout_w * cache.gamma * cache.invstd).max()
    param_scale = np.abs(dout_w).sum(axis=cache.spec.param_axes).max()
    for g, tg, scale in zip(grads, t_grads, (dx_scale, param_scale, param_scale)):
        _close(g, tg, dtype, scale)


DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 1), (2, 5), (16, 7), (128, 33), (1000, 3), (64, 256)])
@pytest.mark.parametrize("backward", [F.batchnorm_backward, F.batchnorm_backward_alt])
def test_batchnorm_train(rng, dtype, shape, backward):
    x, gamma, beta, dout = random_case(rng, shape, shape[1:], dtype=dtype)

    def ours(a, g, b):
        return F.batchnorm_forward(a, g, b, {"mode": "train"})

    def theirs(a, g, b):
        return torch.nn.functional.batch_norm(a, None, None, g, b, training=True, eps=1e-5)

    _compare(ours, backward, theirs, x, gamma, beta, dout)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backward", [F.batchnorm_backward, F.batchnorm_backward_alt])
def test_batchnorm_test_mode(rng, dtype, backward):
    x, gamma, beta, dout = random_case(rng, (9, 6), (6,), dtype=dtype)
    rm = rng.normal(3, 1, 6).astype(dtype)
    rv = rng.uniform(0.5, 4, 6).astype(dtype)

    def ours(a, g, b):
        return F.batchnorm_forward(a, g, b, {"mode": "test", "running_mean": rm, "running_var": rv})

    def theirs(a, g, b):
        return torch.nn.functional.batch_norm(
            a, torch.tensor(rm), torch.tensor(rv), g, b, training=False, eps=1e-5
        )

    _compare(ours, backward, theirs, x, gamma, beta, dout)


@pytest.mark.parametrize("dtype", DTYPES)
def test_running_mean_matches_torch(rng, dtype):
    """CS231n momentum 0.9 is PyTorch momentum 0.1; means follow the same average."""
    rm_t, rv_t = torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64)
    bn_param = {"mode": "train", "momentum": 0.9}
    for _ in range(5):
        x = rng.normal(2, 3, (20, 5)).astype(dtype)
        F.batchnorm_forward(x, np.ones(5, dtype), np.zeros(5, dtype), bn_param)
        torch.nn.functional.batch_norm(
            torch.tensor(x, dtype=torch.float64), rm_t, rv_t, training=True, momentum=0.1
        )
    _close(bn_param["running_mean"], rm_t.numpy().astype(dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 1, 1), (2, 3, 4, 5), (8, 16, 7, 7), (1, 4, 3, 2)])
def test_spatial_batchnorm(rng, dtype, shape):
    x, gamma, beta, dout = random_case(rng, shape, shape[1:2], dtype=dtype)

    def ours(a, g, b):
        return F.spatial_batchnorm_forward(a, g, b, {"mode": "train"})

    def theirs(a, g, b):
        return torch.nn.functional.batch_norm(a, None, None, g, b, training=True, eps=1e-5)

    _compare(ours, F.spatial_batchnorm_backward, theirs, x, gamma, beta, dout)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 2), (3, 1), (5, 7), (64, 300), (2, 2048)])
def test_layernorm(rng, dtype, shape):
    x, gamma, beta, dout = random_case(rng, shape, shape[1:], dtype=dtype)

    def ours(a, g, b):
        return F.layernorm_forward(a, g, b, {})

    def theirs(a, g, b):
        return torch.nn.functional.layer_norm(a, (shape[1],), g, b, eps=1e-5)

    _compare(ours, F.layernorm_backward, theirs, x, gamma, beta, dout)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,G,gamma_shape",
    [((2, 6, 4, 5), 2, (6,)), ((3, 8, 5, 5), 4, (1, 8, 1, 1)), ((1, 4, 1, 3), 1, (4,)),
     ((4, 6, 3, 3), 6, (1, 6, 1, 1)), ((2, 32, 8, 8), 8, (32,))],
)
def test_groupnorm(rng, dtype, shape, G, gamma_shape):
    x, gamma, beta, dout = random_case(rng, shape, gamma_shape, dtype=dtype)

    def ours(a, g, b):
        return F.spatial_groupnorm_forward(a, g, b, G, {})

    def theirs(a, g, b):
        return torch.nn.functional.group_norm(a, G, g.reshape(-1), b.reshape(-1), eps=1e-5)

    _compare(ours, F.spatial_groupnorm_backward, theirs, x, gamma, beta, dout)
