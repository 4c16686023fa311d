"""normgrad.nn normalization modules against torch.nn, step for step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normgrad import kernels, nn


@pytest.fixture(params=["numba", "numpy"])
def backend(request):
    kernels.use_numpy(request.param == "numpy")
    yield request.param
    kernels.use_numpy(False)


def _t(a):
    return torch.tensor(a, requires_grad=True)


def _close(ours, theirs, dtype):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol * max(1.0, np.abs(theirs).max()))


CASES = [
    ("BatchNorm1d", (16, 5), dict()),
    ("BatchNorm1d", (8, 5, 7), dict(momentum=None)),
    ("BatchNorm1d", (3, 5), dict(affine=False)),
    ("BatchNorm2d", (4, 5, 3, 3), dict(momentum=0.3)),
    ("BatchNorm2d", (3, 5, 2, 4), dict(track_running_stats=False)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,shape,kwargs", CASES)
def test_batchnorm_matches_torch_over_steps(rng, backend, name, shape, kwargs, dtype):
    ours = getattr(nn, name)(5, dtype=dtype, **kwargs)
    theirs = getattr(torch.nn, name)(5, dtype=torch.float64 if dtype == np.float64 else torch.float32, **kwargs)
    if ours.affine:  # random gamma/beta, the same in both
        w, b = rng.normal(1, 0.5, 5).astype(dtype), rng.normal(0, 0.5, 5).astype(dtype)
        ours.load_state_dict({**ours.state_dict(), "weight": w, "bias": b})
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w))
            theirs.bias.copy_(torch.tensor(b))
    for step in range(4):
        training = step < 3
        ours.train(training)
        theirs.train(training)
        x = rng.normal(2.0 + step, 1.5, shape).astype(dtype)
        dout = rng.normal(size=shape).astype(dtype)
        xt = _t(x)
        y_t = theirs(xt)
        y_t.backward(torch.tensor(dout))
        y = ours.forward(x)
        dx = ours.backward(dout)
        assert y.dtype == dtype and dx.dtype == dtype
        _close(y, y_t, dtype)
        _close(dx, xt.grad, dtype)
        if ours.affine:
            _close(ours.grads["weight"], theirs.weight.grad, dtype)
            _close(ours.grads["bias"], theirs.bias.grad, dtype)
            theirs.weight.grad = theirs.bias.grad = None
        for key, value in theirs.state_dict().items():
            _close(ours.state_dict()[key], value, dtype)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_state_dict_moves_both_ways(rng):
    ours = nn.BatchNorm2d(3)
    for _ in range(3):
        ours.forward(rng.normal(1, 2, (4, 3, 2, 2)).astype(np.float32))
    theirs = torch.nn.BatchNorm2d(3)
    theirs.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in ours.state_dict().items()})
    back = nn.BatchNorm2d(3)
    back.load_state_dict(theirs.state_dict())  # torch tensors in, unchanged
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key], value)
    assert int(back.buffers["num_batches_tracked"]) == 3
    theirs.eval()
    back.eval()
    x = rng.normal(size=(2, 3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(back.forward(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_load_state_dict_is_strict_and_all_or_nothing():
    bn = nn.BatchNorm1d(3)
    before = bn.state_dict()
    with pytest.raises(KeyError, match="missing"):
        bn.load_state_dict({"weight": np.ones(3)})
    bad = {**before, "weight": np.full(3, 2.0), "running_var": np.ones(4)}
    with pytest.raises(ValueError, match="running_var"):
        bn.load_state_dict(bad)
    np.testing.assert_array_equal(bn.params["weight"], before["weight"])  # nothing changed


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,normalized", [((6, 8), 8), ((3, 4, 5), (4, 5)), ((2, 3, 7), 7)])
def test_layernorm_matches_torch(rng, backend, shape, normalized, dtype):
    ours = nn.LayerNorm(normalized, dtype=dtype)
    theirs = torch.nn.LayerNorm(normalized, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    w = rng.normal(1, 0.5, ours.params["weight"].shape).astype(dtype)
    ours.load_state_dict({"weight": w, "bias": np.zeros_like(w)})
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(w))
    x, dout = rng.normal(3, 2, shape).astype(dtype), rng.normal(size=shape).astype(dtype)
    xt = _t(x)
    theirs(xt).backward(torch.tensor(dout))
    _close(ours.forward(x), theirs(torch.tensor(x)), dtype)
    _close(ours.backward(dout), xt.grad, dtype)
    _close(ours.grads["weight"], theirs.weight.grad, dtype)
    _close(ours.grads["bias"], theirs.bias.grad, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("G,shape", [(2, (3, 6, 4, 4)), (3, (2, 6, 5)), (6, (2, 6, 2, 2))])
def test_groupnorm_matches_torch(rng, backend, G, shape, dtype):
    ours = nn.GroupNorm(G, 6, dtype=dtype)
    theirs = torch.nn.GroupNorm(G, 6, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    w, b = rng.normal(1, 0.5, 6).astype(dtype), rng.normal(size=6).astype(dtype)
    ours.load_state_dict({"weight": w, "bias": b})
    theirs.load_state_dict({"weight": torch.tensor(w), "bias": torch.tensor(b)})
    x, dout = rng.normal(-2, 3, shape).astype(dtype), rng.normal(size=shape).astype(dtype)
    xt = _t(x)
    y_t = theirs(xt)
    y_t.backward(torch.tensor(dout))
    _close(ours.forward(x), y_t, dtype)
    _close(ours.backward(dout), xt.grad, dtype)
    _close(ours.grads["weight"], theirs.weight.grad, dtype)


@pytest.mark.parametrize("module,x,message", [
    (nn.BatchNorm1d(3), np.ones((2, 3, 4, 4)), r"expected 2D or 3D input \(got 4D input\)"),
    (nn.BatchNorm2d(3), np.ones((2, 3)), r"expected 4D input \(got 2D input\)"),
    (nn.BatchNorm1d(3), np.ones((4, 5)), r"expected input of shape \(N, 3, ...\)"),
    (nn.BatchNorm1d(3), np.ones((1, 3)), "more than 1 value per channel"),
    (nn.LayerNorm(4), np.ones((2, 5)), r"expected input of shape \(..., 4\)"),
    (nn.GroupNorm(2, 4), np.ones((2, 3, 2)), r"expected input of shape \(N, 4, ...\)"),
    (nn.BatchNorm1d(3), np.ones((4, 3), dtype=int), "x must be a float32 or float64"),
])
def test_modules_reject_bad_input(module, x, message):
    with pytest.raises((ValueError, TypeError), match=message):
        module.forward(x)


def test_bad_construction_and_backward_before_forward():
    with pytest.raises(ValueError, match="divisible"):
        nn.GroupNorm(3, 4)
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm1d(3, momentum=2.0)
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm2d(0)
    with pytest.raises(RuntimeError, match="before forward"):
        nn.BatchNorm1d(3).backward(np.ones((2, 3)))
