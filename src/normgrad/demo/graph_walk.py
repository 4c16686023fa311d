"""``normgrad graph``: build a norm from gates on random data, backprop, draw, explain."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import autograd as ag
from .. import functional as F
from ..gradcheck import rel_error

DEFAULT_SHAPES = {"batch": (4, 3), "layer": (4, 3), "group": (2, 4, 2, 2)}


def build(norm: str, shape: tuple[int, ...], seed: int, groups: int = 2):
    """The gate graph of ``norm`` on data with mean 3, std 2, after a backward pass
    with a random upstream gradient. Returns (out, inputs, functional_grads)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, shape)
    channels = shape[1]
    gamma, beta = rng.normal(1.0, 0.5, channels), rng.normal(0.0, 0.5, channels)
    dout = rng.normal(size=shape)
    if norm == "group":
        pshape = (1, channels, 1, 1)
        inputs = ag.Tensor(x, "x"), ag.Tensor(gamma.reshape(pshape), "gamma"), ag.Tensor(beta.reshape(pshape), "beta")
        out = ag.groupnorm(*inputs, G=groups)
        _, cache = F.spatial_groupnorm_forward(x, gamma.reshape(pshape), beta.reshape(pshape), groups, {})
        reference = F.spatial_groupnorm_backward(dout, cache)
    elif norm == "layer":
        inputs = ag.Tensor(x, "x"), ag.Tensor(gamma, "gamma"), ag.Tensor(beta, "beta")
        out = ag.layernorm(*inputs)
        reference = F.layernorm_backward(dout, F.layernorm_forward(x, gamma, beta, {})[1])
    else:
        inputs = ag.Tensor(x, "x"), ag.Tensor(gamma, "gamma"), ag.Tensor(beta, "beta")
        out = ag.batchnorm(*inputs)
        reference = F.batchnorm_backward_alt(dout, F.batchnorm_forward(x, gamma, beta, {"mode": "train"})[1])
    out.backward(dout)
    return out, inputs, reference


def parse_shape(text: str, norm: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ValueError(f"--shape must be integers separated by commas, got {text!r}") from None
    rank = 4 if norm == "group" else 2
    if len(shape) != rank or min(shape) < 1:
        wanted = "N,C,H,W" if rank == 4 else "N,D"
        raise ValueError(f"--shape for --norm {norm} must be {wanted} with every size >= 1, got {text!r}")
    return shape


def run(console, norm: str, shape: tuple[int, ...], seed: int, out_path: Path, steps: bool, groups: int) -> int:
    if norm == "batch" and shape[0] < 2:
        raise ValueError("batch norm in train mode needs N >= 2")
    if norm == "group" and shape[1] % groups:
        raise ValueError(f"--groups {groups} must divide the channel count C={shape[1]}")
    out, inputs, reference = build(norm, shape, seed, groups)
    if steps:
        console.print(f"[bold]Backward pass through {norm} norm, gate by gate[/] (x: {shape}, seed {seed})")
        for line in ag.backward_steps(out):
            console.print(line, markup=False, highlight=False)
    errors = [rel_error(t.grad.data.reshape(r.shape), r) for t, r in zip(inputs, reference)]
    console.print(f"gates vs closed form: rel. error dx {errors[0]:.1e}, dgamma {errors[1]:.1e}, dbeta {errors[2]:.1e}")
    ag.render(out, out_path, title=f"{norm} norm: forward (black) and backward (red), x shape {shape}")
    console.print(f"wrote {out_path}")
    return 0 if max(errors) < 1e-10 else 1
