"""The fixed inputs every check runs on, shared by the probe (which calls the user's
code) and the analysis (which rebuilds the same inputs to compute the reference).

Cases are generated from a fixed seed, so every process builds exactly the same
inputs. Inputs have a non-zero mean per feature, gamma and beta are random, upstream
gradients are random, and shapes include N=2, D=1 and G=1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-5
MOMENTUM = 0.9
TRAIN_STEPS = 3
NUMERIC_CASES = 2  # backward: cases on which the user's own forward is differentiated numerically

# forward name -> (backward names, kind); kind decides shapes and the call signature
FAMILIES = {
    "batchnorm_forward": (("batchnorm_backward", "batchnorm_backward_alt"), "batch"),
    "layernorm_forward": (("layernorm_backward",), "layer"),
    "spatial_batchnorm_forward": (("spatial_batchnorm_backward",), "spatial"),
    "spatial_groupnorm_forward": (("spatial_groupnorm_backward",), "group"),
}
FORWARD_OF = {b: f for f, (bs, _) in FAMILIES.items() for b in bs}
FUNCTIONS = tuple(name for f, (bs, _) in FAMILIES.items() for name in (f, *bs))
KIND = {name: FAMILIES[FORWARD_OF.get(name, name)][1] for name in FUNCTIONS}
RUNNING = ("batch", "spatial")  # kinds with running statistics and a test mode

SHAPES = {
    "batch": [(2, 1), (5, 3), (9, 4), (16, 2)],
    "layer": [(2, 1), (3, 5), (6, 4), (4, 7)],
    "spatial": [(2, 1, 1, 1), (3, 2, 2, 2), (4, 3, 2, 3)],
    "group": [(2, 2, 1, 1, 1), (3, 4, 2, 2, 2), (2, 6, 3, 2, 3), (2, 4, 2, 2, 4), (2, 4, 2, 3, 1)],  # last: G
}
GAMMA_LAYOUTS = {"group": ("(1, C, 1, 1)", "(C,)")}  # tried in this order
DEFAULT_LAYOUT = "(C,)"


@dataclass
class Case:
    """One input set. ``xs`` holds TRAIN_STEPS training batches and one test batch."""

    shape: tuple[int, ...]
    G: int | None
    xs: list[np.ndarray]
    gamma: np.ndarray  # (C,)
    beta: np.ndarray
    dout: np.ndarray
    running_mean: np.ndarray | None  # the explicit running statistics bn_param starts with
    running_var: np.ndarray | None

    def describe(self) -> str:
        names = ("N", "D") if len(self.shape) == 2 else ("N", "C", "H", "W")
        text = ", ".join(f"{n} = {s}" for n, s in zip(names, self.shape))
        return text + (f", G = {self.G}" if self.G is not None else "")


def cases(kind: str) -> list[Case]:
    """The fixed cases of a family (same seed in every process)."""
    rng = np.random.default_rng(20240611)
    out = []
    for spec in SHAPES[kind]:
        shape, G = (spec[:4], spec[4]) if kind == "group" else (spec, None)
        C = shape[-1] if kind in ("batch", "layer") else shape[1]
        loc_shape = (1, C, 1, 1) if len(shape) == 4 else (C,)
        if kind == "layer":  # per-row means and scales differ too
            loc, scale = rng.uniform(-5, 5, (shape[0], 1)), rng.uniform(0.5, 3, (shape[0], 1))
        else:
            loc, scale = rng.uniform(-5, 5, loc_shape), rng.uniform(0.5, 3, loc_shape)
        xs = [loc + scale * rng.standard_normal(shape) for _ in range(TRAIN_STEPS + 1)]
        gamma, beta = rng.normal(1.0, 0.5, C), rng.normal(0.0, 0.5, C)
        running = (rng.normal(0.0, 1.0, C), rng.uniform(0.5, 2.0, C)) if kind in RUNNING else (None, None)
        out.append(Case(shape, G, xs, gamma, beta, rng.standard_normal(shape), *running))
    return out


def shaped(a: np.ndarray, layout: str) -> np.ndarray:
    """A (C,) parameter in the layout the function is called with."""
    return a.reshape(1, -1, 1, 1) if layout == "(1, C, 1, 1)" else a.copy()


def view(x, kind, G):
    """x reshaped so the norm's statistics are over ``axes``; returns (view, axes)."""
    if kind == "batch":
        return x, (0,)
    if kind == "layer":
        return x, (1,)
    if kind == "spatial":
        return x, (0, 2, 3)
    N, C, H, W = x.shape
    return x.reshape(N, G, C // G, H, W), (2, 3, 4)
