"""Instance norm, RMS norm, batch renormalization, ghost batch norm and folding:
numeric gradient checks in float64, equality with PyTorch (or a reference written in
torch autograd ops), and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import normgrad
import normgrad.functional as F
from tests.functional.test_gradients import _errors
from tests.reference import random_case

TF = torch.nn.functional


def _t(a, grad=False):
    return torch.tensor(a, requires_grad=grad)


def _tol(dtype):
    return dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)


def test_reexported_from_normgrad():
    for name in ("instancenorm_forward", "rmsnorm_backward", "batchrenorm_forward", "ghost_batchnorm_backward",
                 "fold_batchnorm"):
        assert getattr(normgrad, name) is getattr(F, name)


# ----------------------------------------------------------------------------- instance norm

@pytest.mark.parametrize("shape", [(2, 3, 5), (3, 4, 3, 2), (2, 2, 2, 2, 3)])
def test_instancenorm_gradients(rng, shape):
    x, gamma, beta, dout = random_case(rng, shape, (shape[1],))
    errors = _errors(lambda a, g, b: F.instancenorm_forward(a, g, b, {"eps": 1e-5}), F.instancenorm_backward,
                     x, gamma, beta, dout)
    assert max(errors) < 1e-8, errors


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(2, 3, 7), (4, 3, 5, 6)])
def test_instancenorm_equals_torch(rng, shape, dtype):
    x, gamma, beta, dout = random_case(rng, shape, (shape[1],), dtype=dtype)
    out, cache = F.instancenorm_forward(x, gamma, beta, {"eps": 1e-3})
    dx, dgamma, dbeta = F.instancenorm_backward(dout, cache)
    xt, gt, bt = _t(x, True), _t(gamma, True), _t(beta, True)
    yt = TF.instance_norm(xt, weight=gt, bias=bt, eps=1e-3)
    yt.backward(_t(dout))
    assert out.dtype == dx.dtype == dtype
    for ours, theirs in ((out, yt), (dx, xt.grad), (dgamma, gt.grad), (dbeta, bt.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), **_tol(dtype))


# ----------------------------------------------------------------------------- RMS norm

@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 5), (7,)])
def test_rmsnorm_gradients(rng, shape):
    x, gamma, _, dout = random_case(rng, shape, (shape[-1],))

    def forward(a, g, b):  # beta is not a parameter of RMS norm: add it outside to reuse the checker
        out, cache = F.rmsnorm_forward(a, g, {"eps": 1e-6})
        return out + b, cache

    def backward(d, cache):
        dx, dgamma = F.rmsnorm_backward(d, cache)
        return dx, dgamma, d.reshape(-1, shape[-1]).sum(axis=0)

    errors = _errors(forward, backward, x, gamma, np.zeros(shape[-1]), dout)
    assert max(errors) < 1e-8, errors


@pytest.mark.parametrize("eps", [None, 1e-3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rmsnorm_equals_torch(rng, dtype, eps):
    x, gamma, _, dout = random_case(rng, (5, 3, 8), (8,), dtype=dtype)
    out, cache = F.rmsnorm_forward(x, gamma, {} if eps is None else {"eps": eps})
    dx, dgamma = F.rmsnorm_backward(dout, cache)
    xt, gt = _t(x, True), _t(gamma, True)
    yt = TF.rms_norm(xt, (8,), gt, eps)
    yt.backward(_t(dout))
    for ours, theirs in ((out, yt), (dx, xt.grad), (dgamma, gt.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), **_tol(dtype))


# ----------------------------------------------------------------------------- batch renormalization

def _renorm_reference(x, gamma, beta, running_mean, running_var, eps, rmax, dmax):
    """Batch renormalization in torch autograd ops, r and d detached (Ioffe 2017, algorithm 1)."""
    mean = x.mean(0)
    std = torch.sqrt(x.var(0, unbiased=False) + eps)
    s = torch.sqrt(running_var + eps)
    r = (std / s).clamp(1 / rmax, rmax).detach()
    d = ((mean - running_mean) / s).clamp(-dmax, dmax).detach()
    return gamma * ((x - mean) / std * r + d) + beta


def test_batchrenorm_equals_torch_reference_and_updates_running_stats(rng):
    x, gamma, beta, dout = random_case(rng, (16, 5), (5,))
    rm, rv = rng.normal(2.5, 0.5, 5), rng.uniform(1, 9, 5)  # some r, d clip, some do not
    bn_param = {"mode": "train", "rmax": 1.5, "dmax": 0.5, "running_mean": rm.copy(), "running_var": rv.copy(),
                "momentum": 0.8}
    out, cache = F.batchrenorm_forward(x, gamma, beta, bn_param)
    dx, dgamma, dbeta = F.batchrenorm_backward(dout, cache)
    xt, gt, bt = _t(x, True), _t(gamma, True), _t(beta, True)
    yt = _renorm_reference(xt, gt, bt, _t(rm), _t(rv), 1e-5, 1.5, 0.5)
    yt.backward(_t(dout))
    r = cache.r.ravel()
    assert (r == 1.5).any() or (r == 1 / 1.5).any()
    assert ((r > 1 / 1.5) & (r < 1.5)).any()
    for ours, theirs in ((out, yt), (dx, xt.grad), (dgamma, gt.grad), (dbeta, bt.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(bn_param["running_mean"], 0.8 * rm + 0.2 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(bn_param["running_var"], 0.8 * rv + 0.2 * x.var(0), rtol=1e-12)


def test_batchrenorm_gradients_where_r_and_d_are_clipped(rng):
    """r and d at their bounds are locally constant, so the numeric gradient is the analytic one."""
    x, gamma, beta, dout = random_case(rng, (10, 4), (4,))

    def forward(a, g, b):
        return F.batchrenorm_forward(a, g, b, {"mode": "train", "rmax": 2.0, "dmax": 1.0,
                                               "running_mean": np.full(4, -50.0), "running_var": np.full(4, 100.0)})

    _, cache = forward(x, gamma, beta)
    assert np.all(cache.r == 0.5) and np.all(cache.d == 1.0)
    errors = _errors(forward, F.batchrenorm_backward, x, gamma, beta, dout)
    assert max(errors) < 1e-8, errors


@pytest.mark.parametrize("mode", ["train", "test"])
def test_batchrenorm_with_neutral_limits_is_batchnorm(rng, mode):
    x, gamma, beta, dout = random_case(rng, (9, 3, 2, 2), (3,))
    stats = {"running_mean": rng.normal(size=3), "running_var": rng.uniform(0.5, 2, 3)}
    p1 = {"mode": mode, "rmax": 1.0, "dmax": 0.0, **{k: a.copy() for k, a in stats.items()}}
    p2 = {"mode": mode, **{k: a.copy() for k, a in stats.items()}}
    out1, c1 = F.batchrenorm_forward(x, gamma, beta, p1)
    out2, c2 = F.spatial_batchnorm_forward(x, gamma, beta, p2)
    np.testing.assert_array_equal(out1, out2)
    for a, b in zip(F.batchrenorm_backward(dout, c1), F.spatial_batchnorm_backward(dout, c2)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    for k in stats:
        np.testing.assert_array_equal(p1[k], p2[k])


# ----------------------------------------------------------------------------- ghost batch norm

@pytest.mark.parametrize("N,B", [(12, 4), (11, 4), (6, 6), (5, 8)])
def test_ghost_batchnorm_is_batchnorm_chunk_by_chunk(rng, N, B):
    x, gamma, beta, dout = random_case(rng, (N, 3), (3,))
    ghost = {"mode": "train", "virtual_batch_size": B, "momentum": 0.7}
    out, cache = F.ghost_batchnorm_forward(x, gamma, beta, ghost)
    dx, dgamma, dbeta = F.ghost_batchnorm_backward(dout, cache)
    plain, outs, dxs, dg, db = {"mode": "train", "momentum": 0.7}, [], [], 0, 0
    for s in range(0, N, B):
        o, c = F.batchnorm_forward(x[s:s + B], gamma, beta, plain)
        a, g, b = F.batchnorm_backward_alt(dout[s:s + B], c)
        outs.append(o), dxs.append(a)
        dg, db = dg + g, db + b
    np.testing.assert_allclose(out, np.concatenate(outs), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx, np.concatenate(dxs), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dgamma, dg, rtol=1e-12)
    np.testing.assert_allclose(dbeta, db, rtol=1e-12)
    for k in ("running_mean", "running_var"):
        np.testing.assert_allclose(ghost[k], plain[k], rtol=1e-13)
    # and a torch-autograd reference: chunks normalized alone, concatenated
    xt, gt, bt = _t(x, True), _t(gamma, True), _t(beta, True)
    yt = torch.cat([TF.batch_norm(c, None, None, gt, bt, training=True) for c in xt.split(B)])
    yt.backward(_t(dout))
    for ours, theirs in ((out, yt), (dx, xt.grad), (dgamma, gt.grad), (dbeta, bt.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-10)


def test_ghost_batchnorm_gradients(rng):
    x, gamma, beta, dout = random_case(rng, (10, 2, 2, 3), (2,))
    errors = _errors(lambda a, g, b: F.ghost_batchnorm_forward(a, g, b, {"mode": "train", "virtual_batch_size": 3}),
                     F.ghost_batchnorm_backward, x, gamma, beta, dout)
    assert max(errors) < 1e-8, errors


def test_ghost_batchnorm_test_mode_uses_running_stats(rng):
    x, gamma, beta, _ = random_case(rng, (7, 3), (3,))
    stats = {"running_mean": rng.normal(size=3), "running_var": rng.uniform(0.5, 2, 3)}
    out, _ = F.ghost_batchnorm_forward(x, gamma, beta, {"mode": "test", "virtual_batch_size": 2, **stats})
    ref, _ = F.batchnorm_forward(x, gamma, beta, {"mode": "test", **stats})
    np.testing.assert_array_equal(out, ref)


# ----------------------------------------------------------------------------- folding

@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_fold_batchnorm_equals_layer_then_batchnorm(rng, layer, with_bias):
    C = 5
    if layer == "linear":
        x, weight = rng.normal(size=(8, 7)), rng.normal(size=(C, 7))
        run = lambda w, b: TF.linear(_t(x), _t(w), None if b is None else _t(b))  # noqa: E731
    else:
        x, weight = rng.normal(size=(2, 3, 6, 6)), rng.normal(size=(C, 3, 3, 3))
        run = lambda w, b: TF.conv2d(_t(x), _t(w), None if b is None else _t(b), padding=1)  # noqa: E731
    bias = rng.normal(size=C) if with_bias else None
    gamma, beta, rm, rv = rng.normal(1, 0.5, C), rng.normal(size=C), rng.normal(size=C), rng.uniform(0.2, 3, C)
    ref = TF.batch_norm(run(weight, bias), _t(rm), _t(rv), _t(gamma), _t(beta), training=False, eps=1e-3)
    w2, b2 = F.fold_batchnorm(weight, bias, gamma, beta, rm, rv, eps=1e-3)
    assert w2.shape == weight.shape and b2.shape == (C,)
    got = run(w2, b2)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-12, atol=1e-12 * float(ref.abs().max()))


# ----------------------------------------------------------------------------- bad input

X = np.arange(24, dtype=np.float64).reshape(6, 4) % 5
G4 = np.ones(4)

BAD = {
    "rmax < 1": (lambda: F.batchrenorm_forward(X, G4, G4, {"mode": "train", "rmax": 0.5}), ValueError, "rmax"),
    "dmax < 0": (lambda: F.batchrenorm_forward(X, G4, G4, {"mode": "train", "dmax": -1}), ValueError, "dmax"),
    "rmax not a number": (lambda: F.batchrenorm_forward(X, G4, G4, {"mode": "train", "rmax": "3"}), TypeError,
                          "rmax"),
    "virtual batch 1": (lambda: F.ghost_batchnorm_forward(X, G4, G4, {"mode": "train", "virtual_batch_size": 1}),
                        ValueError, "virtual_batch_size"),
    "virtual batch float": (lambda: F.ghost_batchnorm_forward(X, G4, G4, {"mode": "train",
                                                                         "virtual_batch_size": 2.5}),
                            TypeError, "virtual_batch_size"),
    "virtual batch missing": (lambda: F.ghost_batchnorm_forward(X, G4, G4, {"mode": "train"}), TypeError,
                              "virtual_batch_size"),
    "last chunk of one row": (lambda: F.ghost_batchnorm_forward(X[:5], G4, G4, {"mode": "train",
                                                                               "virtual_batch_size": 2}),
                              ValueError, "last chunk of 1 row"),
    "rms D mismatch": (lambda: F.rmsnorm_forward(X, np.ones(3), {}), ValueError, "gamma"),
    "instance 2-D": (lambda: F.instancenorm_forward(X, G4, G4, {}), ValueError, "at least 3 dimensions"),
    "instance NaN": (lambda: F.instancenorm_forward(np.full((2, 4, 3), np.nan), G4, G4, {}), ValueError, "NaN"),
    "rms integer": (lambda: F.rmsnorm_forward(X.astype(int), G4, {}), TypeError, "x"),
    "fold shapes": (lambda: F.fold_batchnorm(np.ones((3, 2)), None, G4, G4, G4, G4), ValueError, "gamma"),
    "fold negative var": (lambda: F.fold_batchnorm(np.ones((4, 2)), None, G4, G4, G4, -G4), ValueError,
                          "running_var"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused(case):
    call, error, message = BAD[case]
    with pytest.raises(error, match=message):
        call()
