"""Probes on designed inputs: what a forward computes, read off inputs built to show it.

In train mode, gamma = 1 and beta = 0 unless said: x varying along one axis only (the
statistics see variation only along the axes they reduce over, so the output is zero
along the others), a constant x (zero when centred), x with one channel set (group
norm: which channels share a group), x whose variance is eps (where eps enters), and
distinct gamma / beta values (where each lands). ``run_designed`` records the user's
outputs on them (the probe); ``findings`` reads them (the analysis).
"""

from __future__ import annotations

import numpy as np

from .calling import UserError, forward_call, norm_param, plain
from .inputs import EPS, Case, cases, shaped, view

PROBE_CASE = 2  # the case the designed probes are built on (G > 1 with C // G > 1 for group norm)


def AFFINE_GAMMA(C):  # noqa: N802 - distinct values, so each element's factor says which gamma it got
    return 1.0 + 0.25 * np.arange(1, C + 1)


def AFFINE_BETA(C):  # noqa: N802
    return 10.0 * np.arange(1, C + 1)


def tiny_input(case: Case, kind: str) -> np.ndarray:
    """case.xs[0] rescaled so each group's (biased) variance is exactly EPS: where eps enters
    then changes the output by tens of percent (inside the sqrt: xhat's std is 1/sqrt(2))."""
    x = case.xs[0]
    xv, axes = view(x, kind, case.G)
    mu, sd = xv.mean(axis=axes, keepdims=True), xv.std(axis=axes, keepdims=True)
    sd = np.where(sd > 0, sd, 1.0)
    return (mu + np.sqrt(EPS) * (xv - mu) / sd).reshape(x.shape)


def run_designed(fn, user_file, kind, layout: str, seed=None) -> dict:
    """The user's forward on each designed input (see the module's docstring), as plain
    records: 'axis' (one per axis), 'const', 'channel' (group norm), 'tiny', 'affine_*'."""
    case = cases(kind)[PROBE_CASE]
    shape, C = case.shape, case.gamma.size
    ones, zeros = shaped(np.ones(C), layout), shaped(np.zeros(C), layout)
    rng = np.random.default_rng(7)

    def run(x, gamma=ones, beta=zeros):
        param = norm_param(kind, case, seed_shape=seed)
        out, _ = forward_call(fn, user_file, kind, x, gamma.copy(), beta.copy(), param, case.G)
        return plain(out)

    rec = {}
    try:
        rec["axis"] = []
        for a in range(len(shape)):
            pattern = np.ones(len(shape), int)
            pattern[a] = shape[a]
            rec["axis"].append(run(np.broadcast_to(3.0 + rng.standard_normal(tuple(pattern)), shape).copy()))
        rec["const"] = run(np.full(shape, 2.5))
        if kind == "group":
            rec["channel"] = []
            for c in range(C):
                x = np.zeros(shape)
                x[:, c] = 1.0
                rec["channel"].append(run(x))
        rec["tiny"] = run(tiny_input(case, kind))
        x = case.xs[0].copy()
        rec["affine_x"] = run(x)
        rec["affine_gamma"] = run(x, gamma=shaped(AFFINE_GAMMA(C), layout))
        rec["affine_beta"] = run(x, beta=shaped(AFFINE_BETA(C), layout))
    except UserError as err:
        rec["error"] = err.info
    return rec
