"""normgrad.nn's instance norm, RMS norm, batch renormalization, ghost and frozen batch
norm against torch (or references written in torch ops), step for step; folding and
precise statistics on whole models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normgrad import kernels, nn
from tests.nn.test_norm_modules import _close, _t


@pytest.fixture(params=["numba", "numpy"])
def backend(request):
    kernels.use_numpy(request.param == "numpy")
    yield request.param
    kernels.use_numpy(False)


def _torch_dtype(dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


def _copy_affine(rng, ours, theirs, dtype, names=("weight", "bias")):
    values = {n: rng.normal(1 if n == "weight" else 0, 0.5, ours.params[n].shape).astype(dtype) for n in names}
    ours.load_state_dict({**ours.state_dict(), **values})
    with torch.no_grad():
        for n, a in values.items():
            getattr(theirs, n).copy_(torch.tensor(a))


def _steps(rng, ours, theirs, shape, dtype, grads=("weight", "bias"), steps=4, mean=2.0):
    """Train steps then one eval step, comparing y, dx, parameter grads and buffers."""
    for step in range(steps):
        training = step < steps - 1
        ours.train(training)
        theirs.train(training)
        x = rng.normal(mean + step, 1.5, shape).astype(dtype)
        dout = rng.normal(size=shape).astype(dtype)
        xt = _t(x)
        yt = theirs(xt)
        yt.backward(torch.tensor(dout))
        y, dx = ours.forward(x), ours.backward(dout)
        assert y.dtype == dx.dtype == dtype
        _close(y, yt, dtype)
        _close(dx, xt.grad, dtype)
        for name in grads:
            if name in ours.grads:
                _close(ours.grads[name], getattr(theirs, name).grad, dtype)
                getattr(theirs, name).grad = None
        for name, buf in theirs.named_buffers():
            _close(ours.buffers[name].astype(np.float64), buf.double(), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,shape,kwargs", [
    ("InstanceNorm1d", (3, 4, 7), {}),
    ("InstanceNorm1d", (3, 4, 7), dict(affine=True)),
    ("InstanceNorm2d", (2, 4, 3, 5), dict(affine=True, track_running_stats=True)),
    ("InstanceNorm2d", (2, 4, 3, 5), dict(track_running_stats=True, momentum=None)),
])
def test_instance_norm_matches_torch(rng, backend, name, shape, kwargs, dtype):
    ours = getattr(nn, name)(4, dtype=dtype, **kwargs)
    theirs = getattr(torch.nn, name)(4, dtype=_torch_dtype(dtype), **kwargs)
    if ours.affine:
        _copy_affine(rng, ours, theirs, dtype)
    _steps(rng, ours, theirs, shape, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("normalized,shape,eps", [(6, (4, 6), None), ((3, 4), (2, 5, 3, 4), 1e-4)])
def test_rmsnorm_matches_torch(rng, backend, normalized, shape, eps, dtype):
    ours = nn.RMSNorm(normalized, eps=eps, dtype=dtype)
    theirs = torch.nn.RMSNorm(normalized, eps=eps, dtype=_torch_dtype(dtype))
    _copy_affine(rng, ours, theirs, dtype, names=("weight",))
    _steps(rng, ours, theirs, shape, dtype, grads=("weight",))


class TorchRenorm(torch.nn.modules.batchnorm._BatchNorm):
    """Batch renormalization in torch ops, r and d detached (the reference)."""

    def _check_input_dim(self, x):
        pass

    def __init__(self, C, rmax, dmax, **kwargs):
        super().__init__(C, **kwargs)
        self.rmax, self.dmax = rmax, dmax

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        std, s = torch.sqrt(var + self.eps), torch.sqrt(self.running_var + self.eps)
        r = (std / s).clamp(1 / self.rmax, self.rmax).detach()
        d = ((mean - self.running_mean) / s).clamp(-self.dmax, self.dmax).detach()
        xhat = (x - mean.reshape(shape)) / std.reshape(shape)
        y = self.weight.reshape(shape) * (xhat * r.reshape(shape) + d.reshape(shape)) + self.bias.reshape(shape)
        n = x.numel() // x.shape[1]
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / (n - 1), self.momentum)
        return y


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,shape", [("BatchRenorm1d", (12, 4)), ("BatchRenorm2d", (5, 4, 3, 3))])
def test_batch_renorm_matches_reference(rng, backend, name, shape, dtype):
    ours = getattr(nn, name)(4, rmax=1.4, dmax=0.3, momentum=0.4, dtype=dtype)
    theirs = TorchRenorm(4, 1.4, 0.3, momentum=0.4, dtype=_torch_dtype(dtype))
    _copy_affine(rng, ours, theirs, dtype)
    _steps(rng, ours, theirs, shape, dtype, steps=5, mean=0.3)


def test_batch_renorm_with_neutral_limits_is_batch_norm(rng):
    ours, plain = nn.BatchRenorm2d(3, rmax=1.0, dmax=0.0, dtype=np.float64), nn.BatchNorm2d(3, dtype=np.float64)
    for step in range(3):
        x, dout = rng.normal(1 + step, 2, (4, 3, 2, 2)), rng.normal(size=(4, 3, 2, 2))
        np.testing.assert_allclose(ours.forward(x), plain.forward(x), rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(ours.backward(dout), plain.backward(dout), rtol=1e-12, atol=1e-12)
    for k, a in plain.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k], a, rtol=1e-14)


class TorchGhost(torch.nn.modules.batchnorm._BatchNorm):
    """Ghost batch norm in torch: batch norm per chunk, concatenated."""

    def _check_input_dim(self, x):
        pass

    def __init__(self, C, B, **kwargs):
        super().__init__(C, **kwargs)
        self.B = B

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        return torch.cat([super(TorchGhost, self).forward(c) for c in x.split(self.B)])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,shape,B", [("GhostBatchNorm1d", (11, 4), 4), ("GhostBatchNorm2d", (6, 4, 2, 3), 2)])
def test_ghost_batch_norm_matches_chunked_torch(rng, backend, name, shape, B, dtype):
    ours = getattr(nn, name)(4, virtual_batch_size=B, momentum=0.2, dtype=dtype)
    theirs = TorchGhost(4, B, momentum=0.2, dtype=_torch_dtype(dtype))
    _copy_affine(rng, ours, theirs, dtype)
    _steps(rng, ours, theirs, shape, dtype)
    assert int(ours.buffers["num_batches_tracked"]) == 3 * -(-shape[0] // B)  # one update per chunk


def test_frozen_batch_norm(rng):
    bn = nn.FrozenBatchNorm2d(3, eps=1e-3, dtype=np.float64)
    state = {k: rng.uniform(0.5, 2, 3) for k in ("weight", "bias", "running_mean", "running_var")}
    bn.load_state_dict(state)
    assert not bn.params and set(bn.state_dict()) == set(state)
    x, dout = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 4, 4))
    ref = torch.nn.functional.batch_norm(torch.tensor(x), torch.tensor(state["running_mean"]),
                                         torch.tensor(state["running_var"]), torch.tensor(state["weight"]),
                                         torch.tensor(state["bias"]), training=False, eps=1e-3)
    np.testing.assert_allclose(bn.forward(x), ref.numpy(), rtol=1e-12)
    scale = state["weight"] / np.sqrt(state["running_var"] + 1e-3)
    np.testing.assert_allclose(bn.backward(dout), dout * scale.reshape(1, 3, 1, 1), rtol=1e-14)
    assert bn.train().forward(x).tolist() == bn.eval().forward(x).tolist()  # frozen in both modes


def _trained(model, rng, shape, steps=3):
    for _ in range(steps):  # move the running statistics and parameters away from their defaults
        model.forward(rng.normal(1.5, 2, shape))
        model.backward(rng.normal(size=(shape[0], 3)))
    for m in _norms(model):
        m.params["weight"] = rng.normal(1, 0.3, m.params["weight"].shape)
        m.params["bias"] = rng.normal(0, 0.3, m.params["bias"].shape)
    return model


def _norms(model):
    return [m for m in model.layers if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_fuse_batchnorm(rng, kind, bias):
    f64 = dict(dtype=np.float64)
    if kind == "linear":
        model = nn.Sequential(nn.Linear(6, 5, bias=bias, seed=1, **f64), nn.BatchNorm1d(5, **f64), nn.ReLU(),
                              nn.Linear(5, 3, seed=2, **f64))
        shape = (16, 6)
    else:
        model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=bias, seed=1, **f64), nn.BatchNorm2d(4, **f64),
                              nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3, seed=2, **f64))
        shape = (8, 2, 5, 5)
    _trained(model, rng, shape)
    fused = nn.fuse_batchnorm(model)
    assert not _norms(fused) and len(fused) == len(model) - 1 and not fused.training
    assert model.training and _norms(model)  # the original is untouched
    x = rng.normal(1.5, 2, shape)
    want = model.eval().forward(x)
    np.testing.assert_allclose(fused.forward(x), want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("momentum", [0.1, None, 1.0])
def test_update_bn_stats_gives_exact_population_statistics(rng, momentum):
    f64 = dict(dtype=np.float64)
    model = nn.Sequential(nn.BatchNorm1d(3, momentum=momentum, **f64), nn.Linear(3, 3, seed=0, **f64))
    model.eval()
    params = {k: a.copy() for k, a in model.named_params()}
    batches = [rng.normal(1e3, 5, (n, 3)) for n in (7, 13, 2, 30)]
    tracked = int(model[0].buffers["num_batches_tracked"])
    nn.update_bn_stats(model, batches)
    data = np.concatenate(batches)
    np.testing.assert_allclose(model[0].buffers["running_mean"], data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(model[0].buffers["running_var"], data.var(0, ddof=1), rtol=1e-12)
    assert not model.training and int(model[0].buffers["num_batches_tracked"]) == tracked
    for k, a in model.named_params():
        np.testing.assert_array_equal(a, params[k])
    assert "forward" not in vars(model[0])  # the recording wrapper is gone


def test_update_bn_stats_reaches_nested_and_spatial_norms(rng):
    inner = nn.Sequential(nn.BatchNorm2d(2, dtype=np.float64))
    model = nn.Sequential(inner, nn.Flatten())
    batches = [(rng.normal(size=(3, 2, 4, 4)), "labels ignored") for _ in range(3)]
    nn.update_bn_stats(model, batches)
    data = np.concatenate([b[0] for b in batches]).transpose(1, 0, 2, 3).reshape(2, -1)
    np.testing.assert_allclose(inner[0].buffers["running_var"], data.var(1, ddof=1), rtol=1e-12)


BAD = {
    "rmax < 1": (lambda: nn.BatchRenorm1d(3, rmax=0.9), ValueError, "rmax"),
    "dmax < 0": (lambda: nn.BatchRenorm1d(3, dmax=-0.1), ValueError, "dmax"),
    "virtual batch 1": (lambda: nn.GhostBatchNorm1d(3, virtual_batch_size=1), ValueError, "virtual_batch_size"),
    "virtual batch float": (lambda: nn.GhostBatchNorm1d(3, virtual_batch_size=4.0), TypeError, "virtual_batch_size"),
    "ghost chunk of one": (lambda: nn.GhostBatchNorm1d(3, virtual_batch_size=2).forward(np.ones((5, 3))), ValueError,
                           "last chunk of 1 row"),
    "rms shape": (lambda: nn.RMSNorm(4).forward(np.ones((2, 3))), ValueError, r"\(\.\.\., 4\)"),
    "instance rank": (lambda: nn.InstanceNorm2d(3).forward(np.ones((2, 3, 4))), ValueError, "expected input"),
    "frozen channels": (lambda: nn.FrozenBatchNorm2d(3).forward(np.ones((1, 2, 2, 2))), ValueError, "expected"),
    "no batches": (lambda: nn.update_bn_stats(nn.Sequential(nn.BatchNorm1d(2)), []), ValueError, "at least one"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused(case):
    call, error, message = BAD[case]
    with pytest.raises(error, match=message):
        call()
