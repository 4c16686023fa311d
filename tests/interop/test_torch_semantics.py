"""normgrad.torch follows torch's semantics where its NumPy API refuses: NaN and Inf
propagate (mixed-precision training needs an overflowing step to show up as non-finite
gradients, for GradScaler to skip it), empty batches work, eps follows torch's rule per
mode, channels as in torch's module tests; a SyncBatchNorm of unknown rank reverts to a
batch norm that takes any rank."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import normgrad.torch as nt  # noqa: E402
from normgrad.torch import ops  # noqa: E402

PAIRS = {  # name -> (normgrad, torch.nn), same arguments
    "BatchNorm1d": (lambda: nt.BatchNorm1d(4), lambda: torch.nn.BatchNorm1d(4), (5, 4, 6)),
    "BatchNorm2d": (lambda: nt.BatchNorm2d(4), lambda: torch.nn.BatchNorm2d(4), (5, 4, 3, 3)),
    "GroupNorm": (lambda: nt.GroupNorm(2, 4), lambda: torch.nn.GroupNorm(2, 4), (5, 4, 6)),
    "InstanceNorm1d": (lambda: nt.InstanceNorm1d(4, affine=True), lambda: torch.nn.InstanceNorm1d(4, affine=True),
                       (5, 4, 6)),
    "LayerNorm": (lambda: nt.LayerNorm(6), lambda: torch.nn.LayerNorm(6), (5, 4, 6)),
    "RMSNorm": (lambda: nt.RMSNorm(6), lambda: torch.nn.RMSNorm(6), (5, 4, 6)),
}


@pytest.fixture(params=["kernels", "torch ops"])
def path(request, monkeypatch):
    monkeypatch.setattr(ops, "FORCE_TORCH_OPS", request.param == "torch ops")
    return request.param


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_nan_in_the_input_propagates_as_in_torch(name, training, path):
    ours, theirs, shape = (f() if callable(f) else f for f in PAIRS[name])
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    x[1, 2, 0] = float("nan")
    a, b = ours.train(training)(x), theirs.train(training)(x)
    assert torch.equal(torch.isnan(a), torch.isnan(b)) and torch.isnan(a).any()
    torch.testing.assert_close(a, b, equal_nan=True, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(PAIRS))
def test_an_inf_upstream_gradient_gives_non_finite_gradients_without_an_error(name, path):
    ours, theirs, shape = (f() if callable(f) else f for f in PAIRS[name])
    grads = []
    for module in (ours, theirs):
        x = torch.randn(shape, generator=torch.Generator().manual_seed(1), requires_grad=True)
        g = torch.ones(shape)
        g[0, 0, 0] = float("inf")
        module(x).backward(g)
        grads.append(x.grad)
    assert not torch.isfinite(grads[0]).all()
    assert torch.equal(torch.isfinite(grads[0]), torch.isfinite(grads[1]))


def _scaled_steps(convert):
    """Two GradScaler steps of a small net, the second overflowing (scale 2**127): the
    parameters after each, the scale after each."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    net = convert(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    history = []
    for step in range(2):
        x = torch.randn(16, 6, generator=torch.Generator().manual_seed(step))
        if step == 1:
            scaler.update(2.0**127)  # the next scaled loss overflows float32
        loss = net(x).square().mean() * (1e6 if step == 1 else 1.0)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        history.append(([p.detach().clone() for p in net.parameters()], scaler.get_scale()))
    return history


def test_a_grad_scaler_step_that_overflows_is_skipped_as_with_torch_norms():
    ours, theirs = _scaled_steps(nt.convert_norms), _scaled_steps(lambda net: net)
    (p1, s1), (p2, s2) = ours
    (q1, t1), (q2, t2) = theirs
    assert s1 == t1 and s2 == t2 and s2 < 2.0**127  # the overflow was seen and the scale backed off
    for a, b, c in zip(p1, p2, q2):
        assert torch.equal(a, b)  # the overflowing step changed nothing
        torch.testing.assert_close(b, c)


@pytest.mark.parametrize("name", [n for n in PAIRS if n != "InstanceNorm1d"])  # torch's raises an IndexError
def test_an_empty_batch_works_as_in_torch(name, path):
    ours, theirs, shape = (f() if callable(f) else f for f in PAIRS[name])
    x = torch.randn((0, *shape[1:]), requires_grad=True)
    for module in (ours, theirs):
        y = module(x)
        assert y.shape == x.shape
        y.sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))


def test_eps_follows_torch_per_mode():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="eps must be positive"):
        nt.BatchNorm1d(3, eps=0.0)(x)
    torch.testing.assert_close(nt.BatchNorm1d(3, eps=0.0).eval()(x), torch.nn.BatchNorm1d(3, eps=0.0).eval()(x))
    torch.testing.assert_close(nt.LayerNorm(3, eps=0.0)(x), torch.nn.LayerNorm(3, eps=0.0)(x))


def test_sync_batch_norm_takes_bias_false():
    layer = nt.SyncBatchNorm(10, bias=False)
    assert layer.bias is None and layer.weight is not None
    assert set(layer.state_dict()) == set(torch.nn.SyncBatchNorm(10, bias=False).state_dict())


def test_group_norm_refuses_an_input_with_other_channels_where_torch_guesses():
    """normgrad is stricter here: torch's GroupNorm(1, 3, affine=False) takes (3, 2, 3)
    as 2 channels; normgrad refuses an input whose channel count is not num_channels."""
    torch.nn.GroupNorm(1, 3, affine=False)(torch.randn(3, 2, 3))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, ...\)"):
        nt.GroupNorm(1, 3, affine=False)(torch.randn(3, 2, 3))


def test_reverting_torch_sync_batch_norm_gives_a_batch_norm_of_any_rank():
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(4))
    model[1].running_mean.fill_(0.5)
    reverted = nt.revert_sync_batchnorm(torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)).eval()
    layer = reverted[1]
    assert isinstance(layer, nt.BatchNorm) and not layer.training
    assert torch.equal(layer.running_mean, model[1].running_mean) and layer.weight is model[1].weight
    assert set(layer.state_dict()) == set(model[1].state_dict())
    for shape in [(3, 4), (3, 4, 5), (3, 4, 2, 2), (3, 4, 2, 2, 2)]:
        x = torch.randn(shape)
        torch.testing.assert_close(layer(x), torch.nn.functional.batch_norm(
            x, model[1].running_mean, model[1].running_var, model[1].weight, model[1].bias, False, 0.1, 1e-5))
    with pytest.raises(ValueError, match="expected 2D to 5D input"):
        layer(torch.randn(3))


CHANNELS_LAST = {
    "BatchNorm2d": (lambda: nt.BatchNorm2d(4), lambda: torch.nn.BatchNorm2d(4), (3, 4, 5, 6)),
    "BatchNorm3d": (lambda: nt.BatchNorm3d(4), lambda: torch.nn.BatchNorm3d(4), (3, 4, 2, 5, 6)),
    "SyncBatchNorm": (lambda: nt.SyncBatchNorm(4), lambda: torch.nn.BatchNorm2d(4), (3, 4, 5, 6)),
    "GroupNorm": (lambda: nt.GroupNorm(2, 4), lambda: torch.nn.GroupNorm(2, 4), (3, 4, 5, 6)),
    "GroupNorm 5-D": (lambda: nt.GroupNorm(3, 6), lambda: torch.nn.GroupNorm(3, 6), (2, 6, 3, 4, 5)),
    "InstanceNorm2d": (lambda: nt.InstanceNorm2d(4, affine=True), lambda: torch.nn.InstanceNorm2d(4, affine=True),
                       (3, 4, 5, 6)),
    "RMSNorm 4-D": (lambda: nt.RMSNorm((5, 6)), lambda: torch.nn.RMSNorm((5, 6)), (3, 4, 5, 6)),
}


@pytest.mark.parametrize("name", list(CHANNELS_LAST))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_channels_last_in_is_channels_last_out(name, training, path):
    ours, theirs, shape = (f() if callable(f) else f for f in CHANNELS_LAST[name])
    fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
    base = torch.randn(shape, generator=torch.Generator().manual_seed(2)) * 2 + 1
    results = []
    for module in (ours.train(training), theirs.train(training)):
        x = base.clone().contiguous(memory_format=fmt).requires_grad_()
        y = module(x)
        y.backward(torch.ones_like(y) + y.detach())
        results.append((y, x.grad))
    (y, dx), (y_ref, dx_ref) = results
    assert y.is_contiguous(memory_format=fmt) and dx.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name, features_last", [("BatchNorm2d", True), ("GroupNorm", False),
                                                 ("InstanceNorm2d", False)])
def test_channels_last_reads_the_input_where_it_lies(monkeypatch, name, features_last):
    """The kernels get x's own memory (a channels-innermost view), not a contiguous copy:
    batch norm as a features-last norm, group and instance norm on the channels-last kernels."""
    from normgrad import kernels

    seen = []
    real = kernels.forward_stages

    def spy(spec, x, *args, **kwargs):
        seen.append((spec.features_last, x.ctypes.data))
        return real(spec, x, *args, **kwargs)

    monkeypatch.setattr(kernels, "forward_stages", spy)
    x = torch.randn(3, 4, 5, 6).contiguous(memory_format=torch.channels_last)
    module = {"BatchNorm2d": lambda: nt.BatchNorm2d(4), "GroupNorm": lambda: nt.GroupNorm(2, 4),
              "InstanceNorm2d": lambda: nt.InstanceNorm2d(4)}[name]()
    module(x)
    assert seen == [(features_last, x.data_ptr())]


FUNC = {
    "GroupNorm": (lambda: nt.GroupNorm(2, 4), (3, 4, 6)),
    "LayerNorm": (lambda: nt.LayerNorm(6), (3, 4, 6)),
    "InstanceNorm1d": (lambda: nt.InstanceNorm1d(4, affine=True), (3, 4, 6)),
    "BatchNorm1d eval": (lambda: nt.BatchNorm1d(4).eval(), (3, 4, 6)),
    "BatchNorm1d no running stats": (lambda: nt.BatchNorm1d(4, track_running_stats=False), (3, 4, 6)),
}


@pytest.mark.parametrize("name", list(FUNC))
def test_torch_func_transforms(name):
    from torch.func import grad, jacrev, jvp, vmap

    make, shape = FUNC[name]
    module = make().double()
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    batch = torch.randn((5, *shape), dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(vmap(module)(batch), torch.stack([module(b) for b in batch]))
    loss = lambda t: module(t).sin().sum()  # noqa: E731
    xr = x.clone().requires_grad_()
    want = torch.autograd.grad(loss(xr), xr)[0]
    torch.testing.assert_close(grad(loss)(x), want)
    torch.testing.assert_close(jacrev(loss)(x), want)
    tangent = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(jvp(loss, (x,), (tangent,))[1], (want * tangent).sum())


def test_batched_gradients_and_functional_call():
    from torch.func import functional_call

    gn = nt.GroupNorm(2, 4).double()
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gn, (x,), check_batched_grad=True)
    out = gn(x)
    v = torch.randn(7, *out.shape, dtype=torch.float64)
    batched = torch.autograd.grad(out, x, v, is_grads_batched=True)[0]
    torch.testing.assert_close(batched, torch.stack([torch.autograd.grad(gn(x), x, vi)[0] for vi in v]))
    bn = nt.BatchNorm1d(4)
    state = {**dict(bn.named_parameters()), **{k: b.clone() for k, b in bn.named_buffers()}}
    state["running_mean"] = torch.full((4,), 2.0)
    y = functional_call(bn.eval(), state, (torch.zeros(6, 4),))
    torch.testing.assert_close(y, torch.full((6, 4), -2.0 / (1 + 1e-5) ** 0.5))


def test_the_operators_batch_under_vmap():
    from torch.func import vmap

    x = torch.randn(5, 3, 4, 6)
    ys = vmap(lambda t: torch.ops.normgrad.norm_forward(t, None, None, None, None, "group", 2, 1e-5)[0])(x)
    torch.testing.assert_close(ys, torch.stack([nt.GroupNorm(2, 4, affine=False)(t) for t in x]))
