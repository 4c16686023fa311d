"""normgrad.torch modules and functional form: drop-in equal to torch.nn.BatchNorm*d
(outputs, gradients, running statistics over several steps), gradcheck in float64,
state dicts both ways, module conversion, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import normgrad.torch as nt
from normgrad.torch import ops as ntops

KINDS = [(nt.BatchNorm1d, torch.nn.BatchNorm1d, (9, 5)), (nt.BatchNorm1d, torch.nn.BatchNorm1d, (6, 5, 4)),
         (nt.BatchNorm2d, torch.nn.BatchNorm2d, (4, 5, 3, 6)), (nt.BatchNorm3d, torch.nn.BatchNorm3d, (3, 5, 2, 3, 2))]
CONFIGS = [dict(), dict(momentum=None), dict(momentum=0.3, eps=1e-3), dict(affine=False),
           dict(track_running_stats=False)]


@pytest.fixture(params=[False, True], ids=["kernels", "torch-ops"])
def path(request):
    """Both paths: normgrad's kernels, and the device-generic torch path CUDA tensors take."""
    ntops.FORCE_TORCH_OPS = request.param
    yield request.param
    ntops.FORCE_TORCH_OPS = False


def _tol(dtype):
    return 1e-12 if dtype == torch.float64 else 1e-5


def _pair(ours, theirs, C, config, dtype, seed):
    a, b = ours(C, dtype=dtype, **config), theirs(C, dtype=dtype, **config)
    if a.affine:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            a.weight.copy_(torch.randn(C, generator=g) * 0.5 + 1)
            a.bias.copy_(torch.randn(C, generator=g) * 0.5)
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
    return a, b


def _assert_close(x, y, dtype, what):
    torch.testing.assert_close(x, y, rtol=_tol(dtype), atol=_tol(dtype) * max(1.0, float(y.detach().abs().max())), msg=what)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
@pytest.mark.parametrize("ours,theirs,shape", KINDS, ids=["1d", "1d-L", "2d", "3d"])
def test_equals_torch_over_steps_and_in_eval(path, ours, theirs, shape, config, dtype):
    a, b = _pair(ours, theirs, shape[1], config, dtype, seed=len(shape))
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        x = (torch.randn(shape, generator=g, dtype=dtype) * 2 + 3).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        dy = torch.randn(shape, generator=g, dtype=dtype)
        ya, yb = a(x), b(x2)
        (ya * dy).sum().backward()
        (yb * dy).sum().backward()
        _assert_close(ya, yb, dtype, f"y step {step}")
        _assert_close(x.grad, x2.grad, dtype, f"dx step {step}")
        if a.affine:
            _assert_close(a.weight.grad, b.weight.grad, dtype, "dweight")
            _assert_close(a.bias.grad, b.bias.grad, dtype, "dbias")
            a.zero_grad()
            b.zero_grad()
    for name, buf in b.named_buffers():
        _assert_close(dict(a.named_buffers())[name].double(), buf.double(), dtype, name)
    a.eval()
    b.eval()
    x = (torch.randn(shape, generator=g, dtype=dtype) + 3).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    dy = torch.randn(shape, generator=g, dtype=dtype)
    ya, yb = a(x), b(x2)
    (ya * dy).sum().backward()
    (yb * dy).sum().backward()
    _assert_close(ya, yb, dtype, "eval y")
    _assert_close(x.grad, x2.grad, dtype, "eval dx")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 4), (2, 3, 2, 2)])
def test_gradcheck_float64(path, shape, training):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(shape[1], generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(shape[1], generator=g, dtype=torch.float64, requires_grad=True)
    rm, rv = torch.randn(shape[1], dtype=torch.float64), torch.rand(shape[1], dtype=torch.float64) + 0.5

    def f(x, w, b):  # running statistics copied so every evaluation sees the same ones
        return nt.batch_norm(x, rm.clone(), rv.clone(), w, b, training=training)

    assert torch.autograd.gradcheck(f, (x, w, b))


def test_gradcheck_without_affine_and_sync_module_alone():
    x = torch.randn(5, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: nt.batch_norm(x, None, None, training=True), (x,))
    sync = nt.SyncBatchNorm(3, dtype=torch.float64)  # no process group: plain batch norm, as PyTorch's
    assert torch.autograd.gradcheck(sync, (x,))


def test_state_dicts_load_both_ways():
    ours, theirs = nt.BatchNorm2d(4, momentum=None), torch.nn.BatchNorm2d(4, momentum=None)
    for _ in range(2):
        theirs(torch.randn(3, 4, 2, 2) + 1)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    for _ in range(2):
        ours(torch.randn(3, 4, 2, 2) - 1)
    back = torch.nn.BatchNorm2d(4)
    back.load_state_dict(ours.state_dict())
    assert int(back.num_batches_tracked) == 4
    torch.testing.assert_close(back.running_var, ours.running_var)
    assert not torch.equal(back.running_var, theirs.running_var)


def test_drop_in_conversion_shares_parameters_and_trains_the_same():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(16, 6), torch.nn.Sequential(torch.nn.BatchNorm1d(6)))
    ref = torch.nn.Sequential(*[m for m in net])  # same parameter objects
    twin = __import__("copy").deepcopy(ref)
    ours = nt.convert_batchnorm(net)
    assert isinstance(ours[1], nt.BatchNorm2d) and isinstance(ours[5][0], nt.BatchNorm1d)
    assert isinstance(ours[1], torch.nn.BatchNorm2d)
    assert ours[1].weight is ref[1].weight
    x = torch.randn(8, 2, 4, 4)
    torch.testing.assert_close(ours(x), twin(x))
    torch.testing.assert_close(ours[5][0].running_var, twin[5][0].running_var)
    sync = nt.SyncBatchNorm.convert_sync_batchnorm(ours, timeout=10)
    assert isinstance(sync[1], nt.SyncBatchNorm) and isinstance(sync[5][0], nt.SyncBatchNorm)
    assert sync[1].running_mean is ours[1].running_mean and sync[1].timeout.total_seconds() == 10
    assert not any(isinstance(m, (nt.BatchNorm1d, nt.BatchNorm2d)) for m in sync.modules())


def test_memory_layouts():
    x = torch.randn(4, 3, 5, 5) + 2
    a, b = nt.BatchNorm2d(3), torch.nn.BatchNorm2d(3)
    torch.testing.assert_close(a(x.to(memory_format=torch.channels_last)), b(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a(x[:, :, ::2, ::2]), b(x[:, :, ::2, ::2]), rtol=1e-5, atol=1e-5)
    assert "path=normgrad kernels" in repr(a)


def test_float32_large_mean_stays_accurate():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4096, 8, generator=g) + 1e4
    ref = torch.nn.functional.batch_norm(x.double(), None, None, training=True)
    err = (nt.batch_norm(x, None, None, training=True).double() - ref).abs().max().item()
    assert err < 1e-5, err


X = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))


def _with_bad_value(value):
    bad = X.clone()
    bad[1, 2] = value
    return bad


BAD = {
    "not a tensor": (lambda: nt.batch_norm(np.ones((4, 3)), None, None, training=True), TypeError, "torch.Tensor"),
    "1-D": (lambda: nt.BatchNorm1d(3)(torch.randn(3)), ValueError, "2D or 3D"),
    "integer": (lambda: nt.batch_norm(torch.ones(4, 3, dtype=torch.int64), None, None, training=True), TypeError,
                "floating-point"),
    "channels": (lambda: nt.BatchNorm1d(4)(X), ValueError, r"weight must have shape \(3,\)"),
    "one value per channel": (lambda: nt.BatchNorm1d(3)(X[:1]), ValueError, "more than 1 value per channel"),
    "eval without stats": (lambda: nt.batch_norm(X, None, None), ValueError, "running_mean and running_var"),
    "eps 0": (lambda: nt.batch_norm(X, None, None, training=True, eps=0.0), ValueError, "eps"),
    "momentum 2": (lambda: nt.batch_norm(X, None, None, training=True, momentum=2.0), ValueError, "momentum"),
    "timeout": (lambda: nt.SyncBatchNorm(3, timeout=-1), ValueError, "timeout"),
    "comm without dist": (lambda: nt.TorchCommunicator(), RuntimeError, "init_process_group"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused(path, case):
    call, error, message = BAD[case]
    with pytest.raises(error, match=message):
        call()
