"""Norms built from gates: equal to the closed form, double backward equal to PyTorch,
and their pictures carry every named node, value and gradient."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

import normgrad.functional as F
from normgrad import autograd as ag
from normgrad.gradcheck import rel_error
from normgrad.cli import main
from tests.reference import random_case

SEED_NAMES = ["x", "mu", "xmu", "sq", "var", "sqrtvar", "ivar", "xhat", "gammax", "out", "gamma", "beta"]


def _tensors(x, gamma, beta):
    return ag.Tensor(x.copy(), "x"), ag.Tensor(gamma.copy(), "gamma"), ag.Tensor(beta.copy(), "beta")


def _normwise(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _assert_same(graph_out, inputs, out, grads):
    assert _normwise(graph_out.data, out) < 1e-12
    for t, g in zip(inputs, grads):
        got = t.grad.data.reshape(g.shape)
        assert _normwise(got, g) < 1e-12
        assert rel_error(got, g) < 1e-12 or g.size > 64  # elementwise too where cancellation is unlikely


@pytest.mark.parametrize("shape", [(3, 1), (5, 4), (16, 7), (64, 10)])
def test_batchnorm_from_gates_equals_closed_form(rng, shape):
    x, gamma, beta, dout = random_case(rng, shape, shape[1:])
    inputs = _tensors(x, gamma, beta)
    out_g = ag.batchnorm(*inputs)
    out_g.backward(dout)
    out, cache = F.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    _assert_same(out_g, inputs, out, F.batchnorm_backward_alt(dout, cache))


@pytest.mark.parametrize("shape", [(1, 3), (4, 5), (7, 16)])
def test_layernorm_from_gates_equals_closed_form(rng, shape):
    x, gamma, beta, dout = random_case(rng, shape, shape[1:])
    inputs = _tensors(x, gamma, beta)
    out_g = ag.layernorm(*inputs)
    out_g.backward(dout)
    out, cache = F.layernorm_forward(x, gamma, beta, {})
    _assert_same(out_g, inputs, out, F.layernorm_backward(dout, cache))


@pytest.mark.parametrize("shape,G", [((2, 4, 2, 3), 2), ((3, 6, 2, 2), 3), ((1, 4, 3, 3), 1)])
def test_groupnorm_from_gates_equals_closed_form(rng, shape, G):
    x, gamma, beta, dout = random_case(rng, shape, (1, shape[1], 1, 1))
    inputs = _tensors(x, gamma, beta)
    out_g = ag.groupnorm(*inputs, G=G)
    out_g.backward(dout)
    out, cache = F.spatial_groupnorm_forward(x, gamma, beta, G, {})
    _assert_same(out_g, inputs, out, F.spatial_groupnorm_backward(dout, cache))


@pytest.mark.parametrize("norm", ["batch", "layer", "group"])
def test_double_backward_equals_pytorch(rng, norm):
    """d/d(x, gamma) of <d loss/dx, v>: the Hessian-vector product through the norm."""
    shape = (2, 4, 2, 3) if norm == "group" else (6, 4)
    gshape = (1, 4, 1, 1) if norm == "group" else (4,)
    x, gamma, beta, dout = random_case(rng, shape, gshape)
    v = rng.normal(size=shape)
    builders = {"batch": ag.batchnorm, "layer": ag.layernorm, "group": lambda *a: ag.groupnorm(*a, G=2)}
    xt, gt, bt = _tensors(x, gamma, beta)
    loss = (builders[norm](xt, gt, bt) * ag.Tensor(dout)).sum()
    gx, = ag.grad(loss, [xt], create_graph=True)
    hx, hg = ag.grad((gx * ag.Tensor(v)).sum(), [xt, gt])

    xs, gs, bs = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    torch_fn = {
        "batch": lambda: torch.nn.functional.batch_norm(xs, None, None, gs, bs, training=True, eps=1e-5),
        "layer": lambda: torch.nn.functional.layer_norm(xs, (4,), gs, bs, eps=1e-5),
        "group": lambda: torch.nn.functional.group_norm(xs, 2, gs.reshape(-1), bs.reshape(-1), eps=1e-5),
    }[norm]
    t_loss = (torch_fn() * torch.tensor(dout)).sum()
    (t_gx,) = torch.autograd.grad(t_loss, xs, create_graph=True)
    t_hx, t_hg = torch.autograd.grad((t_gx * torch.tensor(v)).sum(), [xs, gs])
    for ours, theirs in ((gx, t_gx), (hx, t_hx), (hg, t_hg)):
        theirs = theirs.detach().numpy()
        np.testing.assert_allclose(ours.data, theirs, rtol=1e-10, atol=1e-10 * np.abs(theirs).max())


def _bn_graph(rng, shape=(4, 3)):
    x, gamma, beta, dout = random_case(rng, shape, shape[1:])
    out = ag.batchnorm(*_tensors(x, gamma, beta))
    out.backward(dout)
    return out


def test_trace_has_the_seeds_nodes_and_edges(rng):
    nodes, edges = ag.trace(_bn_graph(rng))
    names = [n.name for n in nodes]
    assert set(SEED_NAMES) <= set(names)
    assert names.index("mu") < names.index("xmu") < names.index("xhat") < names.index("out")
    pairs = {(p.name, c.name) for p, c in edges}
    assert {("x", "mu"), ("x", "xmu"), ("mu", "xmu"), ("xmu", "sq"), ("xmu", "xhat"), ("ivar", "xhat"),
            ("gamma", "gammax"), ("xhat", "gammax"), ("gammax", "out"), ("beta", "out")} <= pairs
    assert all(n.grad is not None for n in nodes)


def test_to_dot_marks_forward_and_backward_edges(rng):
    dot = ag.to_dot(_bn_graph(rng))
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    n_edges = len(ag.trace(_bn_graph(rng))[1])
    assert dot.count("style=dashed") == n_edges  # one backward edge per forward edge
    for name in SEED_NAMES:
        assert f'label="{name}\\n' in dot


def test_svg_contains_every_node_with_its_gradient(rng, tmp_path):
    out = _bn_graph(rng)
    path = ag.render(out, tmp_path / "bn.svg")
    root = ET.parse(path).getroot()  # parses as XML
    text = " ".join("".join(t.itertext()) for t in root.iter() if t.tag.endswith("text"))
    nodes, edges = ag.trace(out)
    for node in nodes:
        assert node.name in text
        assert ag.graph.summary(node.grad.data) in text  # gradient summary drawn in the box
    ids = [el.get("id", "") for el in root.iter()]
    forward = [i for i in ids if i.startswith("forward-")]
    backward = [i for i in ids if i.startswith("backward-")]
    assert len(forward) == len(backward) == len(edges)
    assert "forward-xmu-xhat" in forward and "backward-xhat-xmu" in backward
    svg = path.read_text()
    assert "#d62728" in svg and "#222222" in svg  # red backward, black forward


def test_png_is_a_valid_nonempty_image(rng, tmp_path):
    path = ag.render(_bn_graph(rng), tmp_path / "bn.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_render_refuses_other_formats_and_leaves_no_file(rng, tmp_path):
    with pytest.raises(ValueError, match=".svg or .png"):
        ag.render(_bn_graph(rng), tmp_path / "bn.pdf")
    assert list(tmp_path.iterdir()) == []


def test_summary_exact_for_tiny_arrays_stats_for_large():
    assert ag.graph.summary(np.array([1.0, -2.5])) == "[ 1. , -2.5]"
    big = ag.graph.summary(np.arange(100.0))
    assert big.startswith("mean 49.5 std 28.9") and "[0, 99]" in big


def test_steps_walk_backward_in_order(rng):
    lines = ag.backward_steps(_bn_graph(rng))
    text = "\n".join(lines)
    gates = [line.split("]")[1].split("=")[0].strip() for line in lines if line.startswith("[")]
    assert gates[0] == "out" and gates[-1] == "mu"
    assert gates.index("xhat") < gates.index("ivar") < gates.index("var") < gates.index("sq") < gates.index("xmu")
    assert "dxhat += dgammax * gamma" in text
    assert "dxmu (sum of 2 branches)" in text and "dx (sum of 2 branches)" in text


@pytest.mark.parametrize("norm,ext", [("batch", "svg"), ("layer", "png"), ("group", "svg")])
def test_cli_graph(tmp_path, capsys, norm, ext):
    out = tmp_path / f"g.{ext}"
    assert main(["graph", "--norm", norm, "--out", str(out), "--steps", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert out.exists() and out.stat().st_size > 1000
    assert "gates vs closed form" in printed and "[1] out = gammax + beta" in printed


@pytest.mark.parametrize("argv,message", [
    (["graph", "--shape", "1,3"], "N >= 2"),
    (["graph", "--shape", "4"], "must be N,D"),
    (["graph", "--norm", "group", "--shape", "2,3,2,2"], "must divide"),
    (["graph", "--out", "g.pdf"], ".svg or .png"),
    (["graph", "--shape", "a,b"], "integers"),
])
def test_cli_graph_bad_options(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
