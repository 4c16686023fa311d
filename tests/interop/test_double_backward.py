"""Double backward (``create_graph=True``, gradient penalties) through normgrad.torch's norms
on the fused kernels (``torch/_double_backward.py``): gradgradcheck in float64, second
(and third) derivatives equal to torch.nn's, a gradient-penalty step equal to torch's,
the kernels really called, and the cases that keep the torch-operations path."""

from __future__ import annotations

import copy

import pytest
import torch

import normgrad.torch as nt
from normgrad import kernels
from normgrad.torch import ops


@pytest.fixture
def calls(monkeypatch):
    """Counts the calls of ``kernels.norm_double_backward``."""
    seen = []
    real = kernels.norm_double_backward

    def counting(*args, **kwargs):
        seen.append(args[0].name)
        return real(*args, **kwargs)

    monkeypatch.setattr(kernels, "norm_double_backward", counting)
    return seen


# (normgrad module, torch module, input shape); every affine one gets random gamma, beta
CASES = {
    "batch1d": (lambda: nt.BatchNorm1d(5), lambda: torch.nn.BatchNorm1d(5), (7, 5)),
    "batch1d-seq": (lambda: nt.BatchNorm1d(3), lambda: torch.nn.BatchNorm1d(3), (4, 3, 5)),
    "batch2d": (lambda: nt.BatchNorm2d(3), lambda: torch.nn.BatchNorm2d(3), (4, 3, 3, 2)),
    "layer": (lambda: nt.LayerNorm(6), lambda: torch.nn.LayerNorm(6), (2, 3, 6)),
    "layer-2d-shape": (lambda: nt.LayerNorm((3, 4)), lambda: torch.nn.LayerNorm((3, 4)), (5, 3, 4)),
    "group": (lambda: nt.GroupNorm(2, 4), lambda: torch.nn.GroupNorm(2, 4), (3, 4, 3, 2)),
    "instance2d": (lambda: nt.InstanceNorm2d(3, affine=True), lambda: torch.nn.InstanceNorm2d(3, affine=True),
                   (2, 3, 4, 3)),
    "rms": (lambda: nt.RMSNorm(6, eps=1e-5), lambda: torch.nn.RMSNorm(6, eps=1e-5), (4, 6)),
}


def _pair(case: str, dtype=torch.float64):
    """(ours, torch's), training mode, the same random gamma and beta."""
    make_ours, make_theirs, shape = CASES[case]
    ours, theirs = make_ours().to(dtype), make_theirs().to(dtype)
    with torch.no_grad():
        for p in ours.parameters():
            p.uniform_(0.5, 1.5) if p is ours.weight else p.uniform_(-1, 1)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs, shape


def _params(m):
    return [p for p in (getattr(m, "weight", None), getattr(m, "bias", None)) if p is not None]


@pytest.mark.parametrize("case", list(CASES))
def test_gradgradcheck_float64_on_the_kernels(case, calls):
    ours, _, shape = _pair(case)
    x = (torch.randn(shape, dtype=torch.float64) * 2 + 1).requires_grad_()
    weight, *rest = _params(ours)

    def f(x, weight, *rest):
        with torch.nn.utils.stateless._reparametrize_module(ours, dict(zip(["weight", "bias"], [weight, *rest]))):
            return ours(x)

    assert torch.autograd.gradgradcheck(f, (x, weight, *rest))
    assert calls and set(calls) <= {"batch", "layer", "group", "instance", "rms"}


def _penalty_grads(m, x, v, order: int = 2):
    """Gradients of a penalty on d(out . v)/dx, with respect to x and the parameters."""
    xi = x.clone().requires_grad_()
    out = m(xi)
    (gx,) = torch.autograd.grad((out * v).sum() + out.pow(3).sum() / 10, xi, create_graph=True)
    penalty = ((gx.flatten(1).norm(dim=1) - 1) ** 2).mean()
    if order == 3:  # a gradient penalty on the penalty's own input gradient
        (gx2,) = torch.autograd.grad(penalty, xi, create_graph=True)
        penalty = (gx2 * torch.linspace(-1, 1, gx2.numel(), dtype=gx2.dtype).reshape(gx2.shape)).sum()
    return torch.autograd.grad(penalty, [xi, *_params(m)])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", list(CASES))
def test_second_derivatives_equal_torch(case, dtype, calls):
    ours, theirs, shape = _pair(case, dtype)
    x = torch.randn(shape, dtype=dtype) * 2 + 1
    v = torch.randn(shape, dtype=dtype)
    got, want = _penalty_grads(ours, x, v), _penalty_grads(theirs, x, v)
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-4)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **tol)
    assert len(calls) == 1


def test_channels_last_equals_torch(calls):
    ours, theirs, _ = _pair("batch2d")
    x = (torch.randn(4, 3, 3, 5, dtype=torch.float64) * 2 + 1).contiguous(memory_format=torch.channels_last)
    v = torch.randn(x.shape, dtype=torch.float64)
    for a, b in zip(_penalty_grads(ours, x, v), _penalty_grads(theirs, x, v)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert calls == ["batch"]


def _convnet(dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3)).to(dtype)
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return model


def _gp_step(model, x):
    """A WGAN-GP step: loss + gradient penalty, backpropagated into the parameters."""
    xi = x.clone().requires_grad_()
    out = model(xi)
    (g,) = torch.autograd.grad(out.sum(), xi, create_graph=True)
    loss = ((g.flatten(1).norm(dim=1) - 1) ** 2).mean() + out.square().mean()
    model.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradient_penalty_step_equals_torch(dtype, calls):
    theirs = _convnet(dtype)
    ours = nt.convert_norms(copy.deepcopy(theirs))
    assert isinstance(ours[1], nt.BatchNorm2d)
    x = torch.randn(6, 3, 8, 8, dtype=dtype)
    (loss, grads), (want_loss, want_grads) = _gp_step(ours, x), _gp_step(theirs, x)
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loss, want_loss, **tol)
    for a, b in zip(grads, want_grads):
        torch.testing.assert_close(a, b, **tol)
    assert calls == ["batch", "batch"]


def test_third_order_equals_the_torch_operations_and_a_finite_difference(monkeypatch):
    """A backward of the fused double backward takes the differentiable torch operations.
    (torch.nn.BatchNorm's own third derivative is not the finite difference's: not compared.)"""
    from normgrad.torch import _double_backward

    for case in ("batch2d", "group", "rms"):
        ours, _, shape = _pair(case)
        x = torch.randn(shape, dtype=torch.float64) * 2 + 1
        v = torch.randn(shape, dtype=torch.float64)
        got = _penalty_grads(ours, x, v, order=3)
        with monkeypatch.context() as m:
            m.setattr(_double_backward, "applies", lambda *args: False)  # the path before the fused kernels
            want = _penalty_grads(ours, x, v, order=3)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)
        e, h = torch.zeros_like(x), 1e-6
        e.view(-1)[1] = 1.0
        second = [_penalty_grads(ours, x + t * e, v)[0] for t in (h, -h)]
        w = torch.linspace(-1, 1, x.numel(), dtype=x.dtype).reshape(x.shape)
        numeric = ((second[0] - second[1]) / (2 * h) * w).sum()
        torch.testing.assert_close(got[0].view(-1)[1], numeric, rtol=1e-5, atol=1e-6)


def test_evaluation_mode_keeps_the_torch_operations(calls):
    ours, theirs, _ = _pair("batch2d")
    with torch.no_grad():
        ours.running_mean.uniform_(-1, 1)
        ours.running_var.uniform_(0.5, 2)
    theirs.load_state_dict(ours.state_dict())
    ours.eval()
    theirs.eval()
    x, v = torch.randn(4, 3, 3, 2, dtype=torch.float64), torch.randn(4, 3, 3, 2, dtype=torch.float64)
    for a, b in zip(_penalty_grads(ours, x, v), _penalty_grads(theirs, x, v)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert calls == []


def test_mask_keeps_the_torch_operations(calls):
    gn = nt.GroupNorm(2, 4).double()
    with torch.no_grad():
        gn.weight.uniform_(0.5, 1.5)
        gn.bias.uniform_(-1, 1)
    x = (torch.randn(3, 4, 5, dtype=torch.float64) + 1).requires_grad_()
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, 3:] = False
    mask[2, :1] = False
    assert torch.autograd.gradgradcheck(lambda x, w, b: ops.apply_norm(x, w, b, None, None, "group", 2, 1e-5,
                                                                        mask)[0], (x, gn.weight, gn.bias))
    assert calls == []


def test_torch_operations_path_unchanged(calls, monkeypatch):
    monkeypatch.setattr(ops, "FORCE_TORCH_OPS", True)
    ours, theirs, shape = _pair("layer")
    x, v = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    for a, b in zip(_penalty_grads(ours, x, v), _penalty_grads(theirs, x, v)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert calls == []


def test_only_parameter_gradients_of_the_first_backward(calls):
    """A penalty on dgamma alone: a of dx is None inside the double backward."""
    for ours, theirs, shape in (_pair("batch2d"), _pair("group")):
        x = torch.randn(shape, dtype=torch.float64).requires_grad_()
        got = []
        for m in (ours, theirs):
            out = m(x)
            (gw,) = torch.autograd.grad((out ** 3).sum(), m.weight, create_graph=True)
            got.append(torch.autograd.grad(gw.square().sum(), [x, m.weight]))
        for a, b in zip(*got):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert len(calls) == 2


def test_without_affine_parameters(monkeypatch, calls):
    """weight None: no gradient of it; second order equal to torch's, third to the torch operations."""
    from normgrad.torch import _double_backward

    ours, theirs = nt.BatchNorm2d(3, affine=False).double(), torch.nn.BatchNorm2d(3, affine=False).double()
    x, v = torch.randn(4, 3, 2, 3, dtype=torch.float64), torch.randn(4, 3, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(_penalty_grads(ours, x, v)[0], _penalty_grads(theirs, x, v)[0], rtol=1e-9, atol=1e-9)
    assert calls == ["batch"]
    got = _penalty_grads(ours, x, v, order=3)[0]
    monkeypatch.setattr(_double_backward, "applies", lambda *args: False)
    torch.testing.assert_close(got, _penalty_grads(ours, x, v, order=3)[0], rtol=1e-8, atol=1e-8)
