"""normgrad.torch under torch.compile's default backend (inductor): the operators are
decomposed into torch operations that inductor fuses (``normgrad.torch.decompositions``).
Compiled results equal eager ones (outputs, gradients, running statistics, train and
eval, masks) and keep float32 accurate at a large mean."""

from __future__ import annotations

import copy

import pytest
import torch
from torch._inductor.utils import run_and_get_code

import normgrad.torch as nt
from normgrad.torch import ops


def _model():
    """Every kind of norm in one small network, parameters away from (1, 0)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), nt.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1), nt.GroupNorm(4, 8), torch.nn.ReLU(),
        nt.InstanceNorm2d(8, affine=True), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 16),
        nt.LayerNorm(16), nt.BatchNorm1d(16), nt.RMSNorm(16), torch.nn.Linear(16, 5))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def _step(model, x):
    """Output, input gradient and parameter gradients of one forward and a backward with a
    random upstream gradient."""
    x = x.clone().requires_grad_()
    model.zero_grad()
    y = model(x)
    (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(5))).sum().backward()
    return y.detach(), x.grad, [p.grad.clone() for p in model.parameters()]


def _assert_steps_equal(got, want, tol):
    for a, b in zip(got[:2] + tuple(got[2]), want[:2] + tuple(want[2])):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_compiled_equals_eager(mode):
    eager = _model()
    eager[1].running_mean.uniform_(-1, 1)
    eager[1].running_var.uniform_(0.5, 2)
    compiled_model = copy.deepcopy(eager)
    for m in (eager, compiled_model):
        m.train(mode == "train")
    compiled = torch.compile(compiled_model, fullgraph=True)
    g = torch.Generator().manual_seed(1)
    for step in range(2):
        x = torch.randn(10, 3, 6, 6, generator=g) * 2 + 3 + step
        _assert_steps_equal(_step(compiled, x), _step(eager, x), 1e-4)
    for name, buffer in eager.named_buffers():
        torch.testing.assert_close(dict(compiled_model.named_buffers())[name], buffer, rtol=1e-5, atol=1e-6)


def test_inductor_fuses_the_norms_instead_of_calling_the_operators():
    model = _model()
    x = torch.randn(10, 3, 6, 6).requires_grad_()
    compiled = torch.compile(model)
    _, code = run_and_get_code(lambda: compiled(x).sum().backward())
    joined = "\n".join(code)
    assert code and "Original ATen: [normgrad.norm_forward" in joined  # decomposed from the operator
    assert "torch.ops.normgrad" not in joined, "an operator is called instead of fused"


def test_export_keeps_the_named_operator():
    program = torch.export.export(_model().eval(), (torch.randn(4, 3, 6, 6),))
    assert "normgrad.norm_forward" in str(program.graph)


def test_masked_batch_norm_compiled_equals_eager():
    bn = nt.BatchNorm1d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    twin = copy.deepcopy(bn)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 7, generator=g) + 5
    mask = torch.rand(3, 7, generator=g) > 0.4
    mask[:, 0] = True
    dy = torch.randn(3, 4, 7, generator=g)
    results = []
    for module in (bn, torch.compile(twin, fullgraph=True)):
        xi = x.clone().requires_grad_()
        y = module(xi, mask)
        (y * dy).sum().backward()
        results.append((y.detach(), xi.grad))
    _assert_steps_equal(results[1] + ([],), results[0] + ([],), 1e-5)
    torch.testing.assert_close(twin.running_mean, bn.running_mean)
    torch.testing.assert_close(twin.running_var, bn.running_var)


@pytest.mark.parametrize("path", ["kernels", "torch ops", "compiled"])
def test_float32_at_a_large_mean_stays_accurate(path):
    """Mean 1e4, std 1: torch's float32 batch norm errs by ~1e-2 there (eager and compiled);
    every path of normgrad's stays within 1e-4 of the float64 result, forward and backward
    (unshifted float32 statistics on the torch-ops path: 5e-4)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8192, 8, generator=g) + 1e4
    dy = torch.randn(8192, 8, generator=g)
    weight = torch.rand(8, generator=g) + 0.5

    def norm(x):
        return nt.batch_norm(x, None, None, weight, training=True)

    def result(fn, x):
        x = x.clone().requires_grad_()
        y = fn(x)
        (y * dy.to(y.dtype)).sum().backward()
        return y.double(), x.grad.double()

    want = result(norm, x.double())
    ops.FORCE_TORCH_OPS = path == "torch ops"
    try:
        got = result(torch.compile(norm, fullgraph=True) if path == "compiled" else norm, x)
    finally:
        ops.FORCE_TORCH_OPS = False
    for a, b in zip(got, want):
        assert (a - b).abs().max().item() <= 1e-4
