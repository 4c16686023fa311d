"""Padding-aware (masked) normalization on every front end and backend.

The semantics: statistics (and running statistics, unbiased by the valid count) over the
valid positions only; every position normalized with them; the true gradient of that
function. Checked against torch's own batch norm on the gathered valid positions, against
a float64 autograd reference with upstream gradient at the padding too, against mask=None
for an all-True mask, and with bad masks refused before any state changes.
"""

from __future__ import annotations

import numpy as np
import pytest

import normgrad
from normgrad import kernels, nn
from normgrad.core.specs import BATCH, GROUP, INSTANCE

torch = pytest.importorskip("torch")
import normgrad.torch as nt  # noqa: E402
from normgrad.torch import ops  # noqa: E402


def _padded(shape, seed=0, share=0.3):
    """x (N, C, *spatial) with a mean far from 0, and a mask (N, *spatial) whose tail
    positions are padding (about ``share`` of them), padding filled with junk."""
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, shape)
    N, L = shape[0], int(np.prod(shape[2:]))
    lengths = rng.integers(max(2, int(L * (1 - 2 * share))), L + 1, size=N) if L > 1 else None
    if L > 1:
        mask = (np.arange(L)[None, :] < lengths[:, None]).reshape((N, *shape[2:]))
    else:
        mask = rng.random(N) > share
        mask[:2] = True
    xp = x.copy()
    xp[np.broadcast_to(~mask.reshape(N, 1, *shape[2:]), shape)] = 50.0  # junk in the padding
    return xp, mask


def reference(spec, x, mask, gamma, beta, dy, G=None, eps=1e-5):
    """y, dx, dgamma, dbeta in float64 torch autograd of the masked norm's definition."""
    xt, g, b = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    view = spec.view(x.shape, G)
    xv = xt.reshape(view)
    w = torch.tensor(mask.reshape(view[0], 1, 1, view[3]), dtype=torch.float64)
    n = torch.broadcast_to(w, xv.shape).sum(dim=spec.reduce_axes, keepdim=True)
    mean = (xv * w).sum(dim=spec.reduce_axes, keepdim=True) / n
    var = ((xv - mean) ** 2 * w).sum(dim=spec.reduce_axes, keepdim=True) / n
    shape = (1, view[1], view[2], 1)
    y = ((xv - mean) / torch.sqrt(var + eps) * g.reshape(shape) + b.reshape(shape)).reshape(x.shape)
    y.backward(torch.tensor(dy))
    return [y.detach().numpy(), xt.grad.numpy(), g.grad.numpy(), b.grad.numpy()]


def _close(got, want, rtol=1e-9):
    for a, b in zip(got, want):
        a = np.asarray(a.detach() if hasattr(a, "detach") else a, dtype=np.float64)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.abs(b).max())))


CASES = {  # name -> (spec, shape, G)
    "batch (N, C)": (BATCH, (12, 5), None),
    "batch (N, C, L)": (BATCH, (6, 5, 9), None),
    "batch (N, C, H, W)": (BATCH, (4, 3, 5, 6), None),
    "instance (N, C, L)": (INSTANCE, (4, 3, 11), None),
    "group (N, C, H, W)": (GROUP, (3, 6, 4, 5), 3),
}


@pytest.mark.parametrize("backend", ["functional", "numba", "numpy", "torch kernels", "torch ops"])
@pytest.mark.parametrize("case", list(CASES))
def test_every_backend_equals_the_masked_definition(case, backend, monkeypatch):
    spec, shape, G = CASES[case]
    x, mask = _padded(shape)
    rng = np.random.default_rng(1)
    C = shape[1]
    gamma, beta, dy = rng.normal(size=C), rng.normal(size=C), rng.normal(size=shape)  # dy at the padding too
    want = reference(spec, x, mask, gamma, beta, dy, G)
    if backend == "functional":
        out, cache = normgrad.norm_forward(spec, x, gamma, beta, {"mode": "train"}, G, mask=mask)
        got = [out, *normgrad.norm_backward(dy, cache)]
    elif backend in ("numba", "numpy"):
        kernels.use_numpy(backend == "numpy")
        try:
            y, stats = kernels.norm_forward(spec, x, gamma, beta, G=G, mask=mask)
            got = [y, *kernels.norm_backward(spec, dy, x, gamma, stats, G=G, mask=mask)]
        finally:
            kernels.use_numpy(False)
    else:
        monkeypatch.setattr(ops, "FORCE_TORCH_OPS", backend == "torch ops")
        layer = nt.Norm(spec, C, num_groups=G, track_running_stats=False, dtype=torch.float64)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(gamma)), layer.bias.copy_(torch.tensor(beta))
        xt = torch.tensor(x, requires_grad=True)
        y = layer(xt, torch.tensor(mask))
        y.backward(torch.tensor(dy))
        got = [y, xt.grad, layer.weight.grad, layer.bias.grad]
    _close(got, want)


def _gathered_batch_norm(x, mask, gamma, beta, dy):
    """torch.nn.BatchNorm1d on the valid positions alone, gathered into (M, C)."""
    C = x.shape[1]
    cols = np.moveaxis(x, 1, -1).reshape(-1, C)[mask.reshape(-1)]
    dcols = np.moveaxis(dy, 1, -1).reshape(-1, C)[mask.reshape(-1)]
    bn = torch.nn.BatchNorm1d(C, momentum=None, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gamma)), bn.bias.copy_(torch.tensor(beta))
    xt = torch.tensor(cols, requires_grad=True)
    y = bn(xt)
    y.backward(torch.tensor(dcols))
    return y.detach().numpy(), xt.grad.numpy(), bn


@pytest.mark.parametrize("front", ["nn", "torch"])
@pytest.mark.parametrize("shape", [(12, 5), (6, 5, 9), (4, 3, 5, 6)])
def test_batch_norm_equals_torch_on_the_valid_positions_alone(shape, front):
    """Zero upstream gradient at the padding: valid outputs, their gradients, the parameter
    gradients and the running statistics are torch's BatchNorm1d on the gathered valid
    columns; padding gets no gradient."""
    x, mask = _padded(shape, seed=2)
    rng = np.random.default_rng(3)
    C = shape[1]
    gamma, beta = rng.normal(size=C), rng.normal(size=C)
    dy = rng.normal(size=shape) * mask.reshape(shape[0], 1, *shape[2:])
    y_ref, dx_ref, bn = _gathered_batch_norm(x, mask, gamma, beta, dy)
    if front == "nn":
        m = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d}[len(shape)](C, momentum=None, dtype=np.float64)
        m.params["weight"][:], m.params["bias"][:] = gamma, beta
        y, dx = m.forward(x, mask), m.backward(dy)
        dgamma, dbeta, running = m.grads["weight"], m.grads["bias"], (m.buffers["running_mean"], m.buffers["running_var"])
    else:
        m = {2: nt.BatchNorm1d, 3: nt.BatchNorm1d, 4: nt.BatchNorm2d}[len(shape)](C, momentum=None, dtype=torch.float64)
        with torch.no_grad():
            m.weight.copy_(torch.tensor(gamma)), m.bias.copy_(torch.tensor(beta))
        xt = torch.tensor(x, requires_grad=True)
        yt = m(xt, torch.tensor(mask))
        yt.backward(torch.tensor(dy))
        y, dx, dgamma, dbeta = yt.detach().numpy(), xt.grad.numpy(), m.weight.grad, m.bias.grad
        running = (m.running_mean.numpy(), m.running_var.numpy())
    flat = np.moveaxis(np.asarray(y), 1, -1).reshape(-1, C)
    dflat = np.moveaxis(np.asarray(dx), 1, -1).reshape(-1, C)
    valid = mask.reshape(-1)
    _close([flat[valid], dflat[valid], dgamma, dbeta, *running],
           [y_ref, dx_ref, bn.weight.grad.numpy(), bn.bias.grad.numpy(), bn.running_mean.numpy(),
            bn.running_var.numpy()])
    assert np.abs(dflat[~valid]).max() == 0.0


@pytest.mark.parametrize("make", [lambda: nt.BatchNorm1d(5), lambda: nt.InstanceNorm1d(5, affine=True),
                                  lambda: nt.GroupNorm(5, 5), lambda: nn.BatchNorm1d(5),
                                  lambda: nn.GroupNorm(5, 5)], ids=["torch bn", "torch in", "torch gn", "nn bn",
                                                                     "nn gn"])
def test_an_all_true_mask_is_no_mask(make):
    x = np.random.default_rng(4).normal(size=(4, 5, 7)).astype(np.float32)
    mask = np.ones((4, 7), dtype=bool)
    a, b = make(), make()
    if isinstance(a, torch.nn.Module):
        ya, yb = a(torch.tensor(x), torch.tensor(mask)), b(torch.tensor(x))
        assert torch.allclose(ya, yb, atol=1e-6)
        assert all(torch.allclose(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    else:
        np.testing.assert_allclose(a.forward(x, mask), b.forward(x), atol=1e-6)


@pytest.mark.parametrize("path", ["kernels", "torch ops"])
@pytest.mark.parametrize("norm", ["batch", "instance", "group"])
def test_gradcheck_and_gradgradcheck(norm, path, monkeypatch):
    monkeypatch.setattr(ops, "FORCE_TORCH_OPS", path == "torch ops")
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.normal(0.3, 0.2, (3, 4, 6)), requires_grad=True)
    # at least 3 valid positions a sample: the statistics of 2 nearly equal values are so
    # ill-conditioned that finite differences, not the gradient, go wrong
    m = torch.tensor(np.arange(6)[None, :] < np.array([6, 4, 3])[:, None])
    w, b = (torch.tensor(rng.normal(size=4), requires_grad=True) for _ in range(2))

    def f(x, w, b):
        return ops.apply_norm(x, w, b, None, None, norm, 2, 1e-5, m)[0]

    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_compiled_fullgraph_equals_eager():
    x, mask = _padded((4, 5, 9), seed=6)
    xt, mt = torch.tensor(x, dtype=torch.float32), torch.tensor(mask)
    eager, compiled_module = nt.BatchNorm1d(5), nt.BatchNorm1d(5)
    compiled = torch.compile(compiled_module, fullgraph=True)
    for _ in range(2):
        a, b = eager(xt, mt), compiled(xt, mt)
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(eager.running_var, compiled_module.running_var)


def _sync_worker(rank, world, shapes, seed):
    import torch.distributed as dist  # noqa: F401

    xs, masks = zip(*[_padded(s, seed=seed + i) for i, s in enumerate(shapes)])
    masks = list(masks)
    masks[1] = np.zeros_like(masks[1])  # rank 1: no valid position at all
    layer = nt.SyncBatchNorm(3, momentum=None, dtype=torch.float64)
    x = torch.tensor(xs[rank], requires_grad=True)
    y = layer(x, torch.tensor(masks[rank]))
    dy = torch.tensor(np.random.default_rng(seed + 10 + rank).normal(size=xs[rank].shape))
    y.backward(dy)
    return y.detach().numpy(), x.grad.numpy(), layer.running_mean.numpy(), layer.running_var.numpy()


def test_sync_batch_norm_with_uneven_masks_equals_one_process():
    """2 processes (gloo), ranks with different valid counts (rank 1 none): each rank's
    outputs and input gradients, and the running statistics, equal batch norm of the
    concatenated batch with the concatenated mask in one process."""
    shapes, seed = [(4, 3, 8), (2, 3, 8)], 11
    results = nt.run_local(_sync_worker, 2, shapes, seed)
    xs, masks = zip(*[_padded(s, seed=seed + i) for i, s in enumerate(shapes)])
    masks = [masks[0], np.zeros_like(masks[1])]
    x = torch.tensor(np.concatenate(xs), requires_grad=True)
    layer = nt.BatchNorm1d(3, momentum=None, dtype=torch.float64)
    y = layer(x, torch.tensor(np.concatenate(masks)))
    dy = np.concatenate([np.random.default_rng(seed + 10 + r).normal(size=s) for r, s in enumerate(shapes)])
    y.backward(torch.tensor(dy))
    rows = np.cumsum([0] + [s[0] for s in shapes])
    for r, (yr, dxr, rm, rv) in enumerate(results):
        _close([yr, dxr, rm, rv], [y.detach().numpy()[rows[r]:rows[r + 1]], x.grad.numpy()[rows[r]:rows[r + 1]],
                                   layer.running_mean.numpy(), layer.running_var.numpy()])


BAD_MASKS = {
    "wrong shape": (lambda x: np.ones(x.shape[:1] + (x.shape[2] + 1,), dtype=bool), ValueError, "shape without"),
    "not bool": (lambda x: np.ones((x.shape[0], x.shape[2]), dtype=np.float32), TypeError, "bool"),
    "no valid position": (lambda x: np.zeros((x.shape[0], x.shape[2]), dtype=bool), ValueError, "no valid position"),
    "one valid value": (lambda x: np.eye(x.shape[0], x.shape[2], dtype=bool)[:, ::-1] & (np.arange(x.shape[0]) == 0)
                        [:, None], ValueError, "more than 1 value"),
}


@pytest.mark.parametrize("case", list(BAD_MASKS))
@pytest.mark.parametrize("front", ["nn", "torch"])
def test_bad_masks_are_refused_and_change_nothing(case, front):
    make_mask, error, message = BAD_MASKS[case]
    x = np.random.default_rng(7).normal(size=(4, 3, 6))
    mask = make_mask(x)
    if front == "nn":
        m = nn.BatchNorm1d(3, dtype=np.float64)
        before = {k: v.copy() for k, v in m.state_dict().items()}
        with pytest.raises(error, match=message):
            m.forward(x, mask)
        assert all(np.array_equal(before[k], v) for k, v in m.state_dict().items())
    else:
        m = nt.BatchNorm1d(3, dtype=torch.float64)
        before = {k: v.clone() for k, v in m.state_dict().items()}
        with pytest.raises(error, match=message):
            m(torch.tensor(x), torch.tensor(mask))
        assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_a_sample_without_valid_position_is_refused_by_per_sample_norms():
    x = np.random.default_rng(8).normal(size=(3, 4, 5))
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False
    with pytest.raises(ValueError, match="no valid position for sample 1"):
        nn.GroupNorm(2, 4).forward(x, mask)
    with pytest.raises(ValueError, match="no valid position"):
        nt.InstanceNorm1d(4)(torch.tensor(x), torch.tensor(mask))


def test_the_padded_sequence_example_shows_what_padding_does():
    import re
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "masked_sequences.py"
    out = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = re.findall(r"running mean off by ([\d.]+) std, running var off by ([\d.]+)%, training output moves by "
                      r"([\d.]+) when padded further", out.stdout)
    (torch_mean, torch_var, torch_drift), (ours_mean, ours_var, ours_drift) = [tuple(map(float, r)) for r in rows]
    assert ours_mean < 0.2 < torch_mean and ours_var < 10 < torch_var
    assert ours_drift == 0.0 < torch_drift


def test_export_keeps_the_mask_and_runs():
    x, mask = _padded((4, 5, 9), seed=9)
    xt, mt = torch.tensor(x, dtype=torch.float32), torch.tensor(mask)
    program = torch.export.export(nt.BatchNorm1d(5).train(), (xt, mt))
    assert "normgrad.norm_forward" in str(program.graph)
    torch.testing.assert_close(program.module()(xt, mt), nt.BatchNorm1d(5).train()(xt, mt))


def test_bfloat16_on_the_torch_ops_path(monkeypatch):
    x, mask = _padded((4, 5, 9), seed=10)
    want = reference(BATCH, x, mask, np.ones(5), np.zeros(5), np.zeros(x.shape))[0]
    y = nt.BatchNorm1d(5, dtype=torch.bfloat16)(torch.tensor(x, dtype=torch.bfloat16), torch.tensor(mask))
    assert y.dtype == torch.bfloat16
    valid = np.broadcast_to(mask[:, None, :], x.shape)
    np.testing.assert_allclose(y.detach().float().numpy()[valid], want[valid], atol=0.05)
