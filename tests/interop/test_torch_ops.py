"""normgrad.torch as PyTorch operators: torch.compile (fullgraph), torch.export with
save/load, torch.jit.trace, opcheck, double backward (gradgradcheck, gradient penalty
against torch), low precision on the torch-ops path, SyncBatchNorm under compile."""

from __future__ import annotations

import warnings

import pytest
import torch

import normgrad.torch as nt
from normgrad.core.specs import SPECS
from normgrad.torch import ops
from normgrad.torch.launch import run_local


@pytest.fixture(params=[False, True], ids=["kernels", "torch-ops"])
def path(request):
    """Both implementations: the kernels, and the torch-ops path CUDA tensors take."""
    ops.FORCE_TORCH_OPS = request.param
    torch._dynamo.reset()  # the forced path is read at run time; start compiled graphs afresh
    yield request.param
    ops.FORCE_TORCH_OPS = False


def _model(kind: str, dtype=torch.float32):
    """A small model around one normgrad norm; the same with torch's norm (shared weights)."""
    torch.manual_seed(0)
    if kind == "1d":
        body = [torch.nn.Linear(12, 16), nt.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 5)]
    else:
        body = [torch.nn.Conv2d(3, 8, 3, padding=1), nt.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.Flatten(),
                torch.nn.Linear(8 * 6 * 6, 5)]
    model = torch.nn.Sequential(*body).to(dtype)
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    return model


def _input(kind: str, dtype=torch.float32, n: int = 10):
    g = torch.Generator().manual_seed(1)
    shape = (n, 12) if kind == "1d" else (n, 3, 6, 6)
    return (torch.randn(shape, generator=g) * 2 + 3).to(dtype)



def _step(model, x):
    """Output, input gradient and parameter gradients of one forward + backward."""
    x = x.clone().requires_grad_()
    model.zero_grad()
    y = model(x)
    (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
    return y.detach(), x.grad, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_compiled_fullgraph_equals_eager(path, kind, mode):
    eager, compiled_model = _model(kind), _model(kind)
    if mode == "eval":  # running statistics away from (0, 1)
        eager[1].running_mean.uniform_(-1, 1)
        eager[1].running_var.uniform_(0.5, 2)
    compiled_model.load_state_dict(eager.state_dict())
    for m in (eager, compiled_model):
        m.train(mode == "train")
    compiled = torch.compile(compiled_model, fullgraph=True, backend="aot_eager")
    for step in range(2):
        x = _input(kind) + step
        want, got = _step(eager, x), _step(compiled, x)
        torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-5)
        for a, b in zip(got[2], want[2]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(compiled_model[1], name), getattr(eager[1], name))


def test_compiled_graph_keeps_the_operator_and_has_no_break():
    model = _model("2d")
    x = _input("2d")
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    targets = {str(n.target) for g in explanation.graphs for n in g.graph.nodes}
    assert "normgrad.norm_forward" in targets
    compiled = torch.compile(_model("2d"), fullgraph=True)  # the default backend (inductor) too
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)


def _opcheck_cases():
    g = torch.Generator().manual_seed(2)

    def t(*shape, grad=True):
        return (torch.randn(shape, generator=g, dtype=torch.float64) + 1).requires_grad_(grad)

    return {
        "batch train": (t(6, 4), t(4), t(4), None, None, "batch", 1, 1e-5),
        "batch train, no affine": (t(5, 3, 2), None, None, None, None, "batch", 1, 1e-3),
        "batch eval": (t(6, 4, 3), t(4), t(4), t(4, grad=False), t(4, grad=False).abs(), "batch", 1, 1e-5),
        "layer": (t(2, 3, 5), t(5), t(5), None, None, "layer", 1, 1e-5),
        "group": (t(3, 6, 2, 2), t(6), t(6), None, None, "group", 3, 1e-5),
    }


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", list(_opcheck_cases()))
def test_opcheck(path, case, dtype):
    args = tuple(a.detach().to(dtype).requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a
                 for a in _opcheck_cases()[case])
    torch.library.opcheck(torch.ops.normgrad.norm_forward.default, args)
    y, mean, var, invstd = torch.ops.normgrad.norm_forward(*args)
    dy = torch.randn_like(y)
    x, weight = args[0].detach(), None if args[1] is None else args[1].detach()
    torch.library.opcheck(torch.ops.normgrad.norm_backward.default,
                          (dy, x, weight, mean, var, invstd, args[5], args[6], args[3] is None))


@pytest.mark.parametrize("case", list(_opcheck_cases()))
def test_gradgradcheck_float64(path, case):
    x, weight, bias, rm, rv, norm, groups, eps = _opcheck_cases()[case]

    def f(x, *params):
        w, b = params if params else (None, None)
        return torch.ops.normgrad.norm_forward(x, w, b, rm, rv, norm, groups, eps)[0]

    inputs = (x,) if weight is None else (x, weight, bias)
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


def test_gradient_penalty_equals_torch(path):
    """A WGAN-GP style penalty, ||d out / d x||^2, backpropagated into the weights."""
    ours, theirs = nt.BatchNorm2d(4, dtype=torch.float64), torch.nn.BatchNorm2d(4, dtype=torch.float64)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.uniform_(-1, 1)
        theirs.load_state_dict(ours.state_dict())
    x = torch.randn(5, 4, 3, 3, dtype=torch.float64) * 2 + 1
    grads = []
    for bn in (ours, theirs):
        xi = x.clone().requires_grad_()
        out = (bn(xi) ** 3).sum()
        (gx,) = torch.autograd.grad(out, xi, create_graph=True)
        penalty = gx.pow(2).sum()
        grads.append(torch.autograd.grad(penalty, (xi, bn.weight, bn.bias)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_export_save_load_runs_the_operator(tmp_path):
    model = _model("2d").eval()
    model[1].running_mean.uniform_(-1, 1)
    x = _input("2d")
    program = torch.export.export(model, (x,))
    assert "normgrad.norm_forward.default" in {str(n.target) for n in program.graph.nodes}
    torch.export.save(program, tmp_path / "model.pt2")
    loaded = torch.export.load(tmp_path / "model.pt2")
    torch.testing.assert_close(loaded.module()(x), model(x))
    torch.testing.assert_close(loaded.module()(x + 1), model(x + 1))


def test_export_in_training_mode_updates_running_stats():
    model, reference = _model("1d"), _model("1d")
    x = _input("1d")
    program = torch.export.export(model, (x,))
    exported = program.module()
    torch.testing.assert_close(exported(x), reference(x))
    torch.testing.assert_close(exported.state_dict()["1.running_mean"], reference[1].running_mean)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # torch 2.13 deprecates TorchScript
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the shape checks, fixed in a trace
def test_jit_trace(path):
    model = _model("1d")
    x = _input("1d")
    traced = torch.jit.trace(model.eval(), (x,))
    torch.testing.assert_close(traced(x + 1), model(x + 1))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("norm", ["batch", "layer", "group"])
def test_low_precision_takes_torch_ops_in_float32(dtype, norm):
    g = torch.Generator().manual_seed(4)
    x64 = torch.randn(8, 6, 5, 5, generator=g, dtype=torch.float64) * 3 + 100  # a large mean
    w64, b64 = torch.rand(6 if norm != "layer" else 5, generator=g, dtype=torch.float64) + 0.5, None
    b64 = torch.randn(w64.shape, generator=g, dtype=torch.float64)
    groups = 3
    x, w, b = (t.to(dtype) for t in (x64, w64, b64))
    y, mean, var, invstd = torch.ops.normgrad.norm_forward(x, w, b, None, None, norm, groups, 1e-5)
    assert y.dtype == dtype and mean.dtype == torch.float32 and ops.path_of(x) == "torch ops, float32 statistics"
    # the reference: the same rounded inputs, in float64
    ref = torch.ops.normgrad.norm_forward(x.double(), w.double(), b.double(), None, None, norm, groups, 1e-5)[0]
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(y.double(), ref, rtol=2 * eps, atol=4 * eps * float(ref.abs().max()))
    # backward too
    xr = x.clone().requires_grad_()
    dy = torch.randn(x.shape, generator=g).to(dtype)
    torch.ops.normgrad.norm_forward(xr, w, b, None, None, norm, groups, 1e-5)[0].backward(dy)
    xr64 = x.double().requires_grad_()
    torch.ops.normgrad.norm_forward(xr64, w.double(), b.double(), None, None, norm, groups, 1e-5)[0].backward(
        dy.double())
    assert xr.grad.dtype == dtype
    torch.testing.assert_close(xr.grad.double(), xr64.grad, rtol=4 * eps, atol=8 * eps * float(xr64.grad.abs().max()))


def test_module_says_which_path_it_took():
    bn = nt.BatchNorm1d(3)
    assert "path" not in repr(bn)
    bn(torch.randn(4, 3))
    assert repr(bn).endswith("path=normgrad kernels)")
    bn.to(torch.bfloat16)(torch.randn(4, 3, dtype=torch.bfloat16))
    assert repr(bn).endswith("path=torch ops, float32 statistics)")


def _compiled_sync_worker(rank, world):
    """A compiled model with SyncBatchNorm: eager at the layer (one warning), equal to eager."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), nt.SyncBatchNorm(4, timeout=20), torch.nn.ReLU())
    twin = torch.nn.Sequential(torch.nn.Linear(6, 4), nt.SyncBatchNorm(4, timeout=20), torch.nn.ReLU())
    twin.load_state_dict(model.state_dict())
    x = torch.randn(3 + rank, 6, generator=torch.Generator().manual_seed(rank))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = torch.compile(model, backend="aot_eager")
        y1 = compiled(x)
        y1.sum().backward()
        compiled(x + 1)
    y2 = twin(x)
    y2.sum().backward()
    messages = [str(w.message) for w in caught if "SyncBatchNorm runs eagerly" in str(w.message)]
    return dict(warnings=len(messages), same=bool(torch.allclose(y1, y2, atol=1e-6)),
                grads=bool(torch.allclose(model[0].weight.grad, twin[0].weight.grad, atol=1e-6)),
                tracked=int(model[1].num_batches_tracked))


def test_sync_batchnorm_under_compile_falls_back_to_eager_with_one_warning():
    for result in run_local(_compiled_sync_worker, 2, deadline=240):
        assert result == dict(warnings=1, same=True, grads=True, tracked=2), result
