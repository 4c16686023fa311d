"""Every combination a NormSpec can express, on every backend and front end, against a
float64 reference computed from the spec's definition (the (N, G, K, L) view and its
reduced axes), in training and, where the spec keeps them, with running statistics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import normgrad
from normgrad import kernels, nn
from normgrad.core.specs import ACROSS, GROUPS, NormSpec

torch = pytest.importorskip("torch")
import normgrad.torch as nt  # noqa: E402
from normgrad.torch import ops  # noqa: E402


def _specs():
    for features_last, across, groups, centered, running in itertools.product(
            (False, True), ACROSS, GROUPS, (True, False), (False, True)):
        try:
            yield NormSpec("swept", features_last, across, groups, centered, running)
        except ValueError:  # running statistics need per-channel statistics
            assert running and across == "sample" and groups != "channel"


SPECS = list(_specs())
G = 3  # groups, for specs whose groups are given


def _one_value_each(spec) -> bool:
    """Statistics of one value each (features last, one channel per group, per sample): a
    centred running average of them has no unbiased variance, so training is refused."""
    return (spec.running_stats and spec.centered and spec.features_last and spec.groups == "channel"
            and spec.across == "sample")


def _refused_or(spec, train):
    """Run ``train``; for a spec whose training must be refused, expect the refusal instead."""
    if _one_value_each(spec):
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            train()
        return False
    train()
    return True


def _ids(spec):
    return (f"{'last' if spec.features_last else 'first'}-{spec.across}-{spec.groups}-"
            f"{'centred' if spec.centered else 'uncentred'}{'-running' if spec.running_stats else ''}")


def _data(spec, seed=0):
    rng = np.random.default_rng(seed)
    shape = (4, 3, 6) if spec.features_last else (5, 6, 4)
    x = rng.normal(1.5, 2.0, shape)
    C = 6
    return x, rng.normal(size=C), rng.normal(size=C), rng.normal(size=shape)


def reference(spec, x, gamma, beta, dy, eps=1e-5, running=None):
    """(y, dx, dgamma, dbeta, mean, var) in float64 torch autograd, from the spec's definition."""
    xt, g, b = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    view = spec.view(x.shape, G)
    xv = xt.reshape(view)
    if running is not None:
        mean, var = (torch.tensor(r).reshape(1, view[1], view[2], 1) for r in running)
    elif spec.centered:
        mean = xv.mean(dim=spec.reduce_axes, keepdim=True)
        var = (xv - mean).square().mean(dim=spec.reduce_axes, keepdim=True)
    else:
        mean = torch.zeros(())
        var = xv.square().mean(dim=spec.reduce_axes, keepdim=True)
    y = (xv - mean) / torch.sqrt(var + eps) * g.reshape(1, view[1], view[2], 1) + b.reshape(1, view[1], view[2], 1)
    y = y.reshape(x.shape)
    y.backward(torch.tensor(dy))
    return [y.detach().numpy(), xt.grad.numpy(), g.grad.numpy(), b.grad.numpy()]


def _close(got, want, rtol, invstd=1.0):
    """Each of ``got`` equals ``want`` to ``rtol`` of the larger of 1 and the result's
    magnitude; rounding in x's dtype reaches dx amplified by 1/std (``invstd``, the
    largest of the forward's)."""
    for a, b in zip(got, want):
        a = np.asarray(a.detach() if hasattr(a, "detach") else a, dtype=np.float64)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.abs(b).max()), invstd))


@pytest.mark.parametrize("spec", SPECS, ids=_ids)
def test_functional(spec):
    x, gamma, beta, dy = _data(spec)
    if not _refused_or(spec, lambda: normgrad.norm_forward(spec, x, gamma, beta, {"mode": "train"}, G=G)):
        return
    out, cache = normgrad.norm_forward(spec, x, gamma, beta, {"mode": "train"}, G=G)
    _close((out, *normgrad.norm_backward(dy, cache)), reference(spec, x, gamma, beta, dy), 1e-10)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("spec", SPECS, ids=_ids)
def test_kernels(spec, dtype, backend):
    x, gamma, beta, dy = _data(spec)
    kernels.use_numpy(backend == "numpy")
    try:
        xd, dyd = x.astype(dtype), dy.astype(dtype)
        y, stats = kernels.norm_forward(spec, xd, gamma, beta, G=G)
        grads = kernels.norm_backward(spec, dyd, xd, gamma, stats, G=G)
    finally:
        kernels.use_numpy(False)
    assert y.dtype == dtype and grads[0].dtype == dtype
    _close((y, *grads), reference(spec, x.astype(dtype).astype(np.float64), gamma, beta,
                                  dy.astype(dtype).astype(np.float64)), 1e-10 if dtype == np.float64 else 2e-5,
           float(np.max(stats.invstd)))


def _running_stats(spec, module_buffers):
    return module_buffers["running_mean"], module_buffers["running_var"]


@pytest.mark.parametrize("spec", SPECS, ids=_ids)
def test_nn_module(spec):
    x, gamma, beta, dy = _data(spec)
    m = nn.Norm(spec, 6, momentum=None, num_groups=G, dtype=np.float64)
    m.params["weight"][:], m.params["bias"][:] = gamma, beta
    if not _refused_or(spec, lambda: m.forward(x)):
        return
    y = m.forward(x)
    _close((y, m.backward(dy), m.grads["weight"], m.grads["bias"]), reference(spec, x, gamma, beta, dy), 1e-10)
    if spec.running_stats:
        m.eval()
        running = _running_stats(spec, m.buffers)
        y = m.forward(x)
        _close((y, m.backward(dy)), reference(spec, x, gamma, beta, dy, running=running)[:2], 1e-10)


@pytest.mark.parametrize("path", ["kernels", "torch ops"])
@pytest.mark.parametrize("spec", SPECS, ids=_ids)
def test_torch_module(spec, path, monkeypatch):
    monkeypatch.setattr(ops, "FORCE_TORCH_OPS", path == "torch ops")
    x, gamma, beta, dy = _data(spec)
    m = nt.Norm(spec, 6, momentum=None, num_groups=G, dtype=torch.float64)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(gamma)), m.bias.copy_(torch.tensor(beta))
    xt = torch.tensor(x, requires_grad=True)
    if not _refused_or(spec, lambda: m(xt)):
        return
    y = m(xt)
    y.backward(torch.tensor(dy))
    _close((y, xt.grad, m.weight.grad, m.bias.grad), reference(spec, x, gamma, beta, dy), 1e-10)
    if spec.running_stats:
        m.eval()
        running = (m.running_mean.numpy(), m.running_var.numpy())
        xt = torch.tensor(x, requires_grad=True)
        y = m(xt)
        y.backward(torch.tensor(dy))
        _close((y, xt.grad), reference(spec, x, gamma, beta, dy, running=running)[:2], 1e-10)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.running_stats and not _one_value_each(s)], ids=_ids)
def test_running_statistics_agree_across_front_ends(spec):
    """One training batch, momentum None: every front end keeps the batch's statistics per
    channel (averaged over samples per sample), the unbiased variance where centred."""
    x, gamma, beta, dy = _data(spec)
    view = spec.view(x.shape, G)
    xv = x.reshape(view)
    count = spec.count(view)
    mean = xv.mean(axis=spec.reduce_axes) if spec.centered else np.zeros(spec.stats_shape(view))
    second = (xv.var(axis=spec.reduce_axes) if spec.centered else np.square(xv).mean(axis=spec.reduce_axes))
    mean, second = mean.reshape(spec.stats_shape(view)), second.reshape(spec.stats_shape(view))
    if spec.across == "sample":
        mean, second = mean.mean(0), second.mean(0)
    want_var = second * count / (count - 1) if spec.centered else second
    m = nn.Norm(spec, 6, momentum=None, num_groups=G, dtype=np.float64)
    m.forward(x)
    t = nt.Norm(spec, 6, momentum=None if spec.across == "batch" else 1.0, num_groups=G, dtype=torch.float64)
    t(torch.tensor(x))
    if spec.across == "batch":
        np.testing.assert_allclose(m.buffers["running_mean"], mean.reshape(-1), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(m.buffers["running_var"], want_var.reshape(-1), rtol=1e-12)
    np.testing.assert_allclose(t.running_mean.numpy(), mean.reshape(-1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(t.running_var.numpy(), want_var.reshape(-1), rtol=1e-12)


@pytest.mark.parametrize("field, value, message", [
    ("across", "everything", "across must be one of"),
    ("groups", "some", "groups must be one of"),
    ("centered", 1, "centered must be a bool"),
    ("features_last", "no", "features_last must be a bool"),
    ("name", "has space", "name must be letters"),
])
def test_a_field_a_spec_cannot_serve_is_refused_by_name(field, value, message):
    fields = dict(name="n", features_last=False, across="batch", groups="one", centered=True, running_stats=False)
    fields[field] = value
    with pytest.raises((ValueError, TypeError), match=message):
        NormSpec(**fields)
    with pytest.raises(ValueError, match="running_stats needs statistics per channel"):
        NormSpec("n", False, "sample", "given", True, True)


def test_a_spec_travels_as_its_code():
    from normgrad.core.specs import SPECS as BUILT_IN, from_code

    for spec in SPECS + list(BUILT_IN.values()):
        assert from_code(spec.code) == spec
    assert from_code("batch") is BUILT_IN["batch"]
    with pytest.raises(ValueError, match="unknown norm"):
        from_code("nonsense")
