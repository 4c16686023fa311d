"""Run a user's CS231n-style norm functions on fixed cases and record what they return.

It runs inside the checker's child process (or in-process for ``check(namespace)``)
and, with ``calling`` and ``designed``, is the only code that calls user functions.
It records raw outputs as plain lists so they travel as JSON; ``analysis`` compares
them with the reference on the same ``inputs``.

Conventions are taken out of the comparison: batch-norm kinds get explicit,
non-trivial running statistics in ``bn_param``, so a correct function passes
whatever its starter code does when they are missing (that is probed on its own,
``run_init``). Group norm is run with gamma shaped (1, C, 1, 1) and (C,), both
documented by the course. Each case runs on its own: a function that raises on one
case (G = 1, say) is still compared on the others, and the raising case is named.
"""

from __future__ import annotations

import re

import numpy as np

from .calling import (UserError, call, case_error, describe_exception, error_info, forward_call, norm_param, plain,
                      returned, seed_shape)
from .designed import AFFINE_BETA, AFFINE_GAMMA, PROBE_CASE, run_designed, tiny_input
from .inputs import (DEFAULT_LAYOUT, EPS, FAMILIES, FORWARD_OF, FUNCTIONS, GAMMA_LAYOUTS, KIND, MOMENTUM,
                     NUMERIC_CASES, RUNNING, SHAPES, TRAIN_STEPS, Case, cases, shaped)

__all__ = ["run_function", "run_forward", "run_backward", "run_init", "doc_layout",
           # where they live: inputs, calling, designed
           "EPS", "MOMENTUM", "TRAIN_STEPS", "NUMERIC_CASES", "FAMILIES", "FORWARD_OF", "FUNCTIONS", "KIND",
           "RUNNING", "SHAPES", "GAMMA_LAYOUTS", "DEFAULT_LAYOUT", "Case", "cases", "shaped",
           "UserError", "error_info", "describe_exception", "norm_param", "seed_shape",
           "PROBE_CASE", "AFFINE_GAMMA", "AFFINE_BETA", "tiny_input"]


def doc_layout(fn) -> str | None:
    """The gamma shape the function's own docstring states: '(1, C, 1, 1)', '(C,)' or None."""
    doc = getattr(fn, "__doc__", None) or ""
    for line in doc.splitlines():
        if re.search(r"gamma|scale", line, re.I):
            if re.search(r"\(\s*1\s*,\s*C\s*,\s*1\s*,\s*1\s*,?\s*\)", line):
                return "(1, C, 1, 1)"
            if re.search(r"\(\s*C\s*,?\s*\)", line):
                return "(C,)"
    return None


def _modified(before: dict, after: dict) -> list[str]:
    return [k for k in before if not np.array_equal(before[k], after[k], equal_nan=True)]


def _forward_case(fn, user_file, kind, case: Case, layout: str, seed=None) -> dict:
    """Train steps, then test mode (batch-norm kinds), on one case."""
    rec = {"train_out": [], "modified": []}
    param = norm_param(kind, case, seed_shape=seed)
    gamma, beta = shaped(case.gamma, layout), shaped(case.beta, layout)
    try:
        for x in case.xs[:TRAIN_STEPS]:
            inputs = {"x": x.copy(), "gamma": gamma.copy(), "beta": beta.copy()}
            before = {k: v.copy() for k, v in inputs.items()}
            out, _ = forward_call(fn, user_file, kind, inputs["x"], inputs["gamma"], inputs["beta"], param, case.G)
            rec["train_out"].append(plain(out))
            rec["modified"] += [k for k in _modified(before, inputs) if k not in rec["modified"]]
        if kind in RUNNING:
            rec["running_mean"] = plain(param.get("running_mean"))
            rec["running_var"] = plain(param.get("running_var"))
            param["mode"] = "test"
            out, _ = forward_call(fn, user_file, kind, case.xs[-1].copy(), gamma.copy(), beta.copy(), param, case.G)
            rec["test_out"] = plain(out)
    except UserError as err:
        rec["error"] = case_error(err, case)
    return rec


def run_forward(fn, name: str, user_file: str | None = None) -> dict:
    """Per gamma layout, per case: outputs, running statistics, test-mode output; the designed
    probes; the gamma layout the docstring states."""
    kind = KIND[name]
    layouts = GAMMA_LAYOUTS.get(kind, (DEFAULT_LAYOUT,))
    result = {"doc_layout": doc_layout(fn) if kind in GAMMA_LAYOUTS else None}
    seed = None
    if kind in RUNNING:
        result["init"] = run_init(fn, kind, user_file)
        seed = seed_shape(result["init"], cases(kind)[1].gamma.size)
        result["seed_shape"] = list(seed) if seed else None
    result["layouts"] = {lay: [_forward_case(fn, user_file, kind, c, lay, seed) for c in cases(kind)]
                         for lay in layouts}
    result["probes"] = {lay: run_designed(fn, user_file, kind, lay, seed) for lay in layouts}
    return result


def run_init(fn, kind: str, user_file: str | None) -> dict:
    """One training step with a bn_param that has no running statistics yet: what the
    function starts them at (CS231n's starter: zeros), or the error it raises."""
    case = cases(kind)[1]
    param = {"mode": "train", "eps": EPS, "momentum": MOMENTUM}
    try:
        forward_call(fn, user_file, kind, case.xs[0].copy(), case.gamma.copy(), case.beta.copy(), param, case.G)
    except UserError as err:
        return {"error": err.info}
    return {"running_mean": plain(param.get("running_mean")), "running_var": plain(param.get("running_var"))}


def _numeric_grads(forward, user_file, kind, case: Case, layout: str, seed=None) -> dict:
    """d sum(forward(x) * dout) / d(x, gamma, beta) of the user's own forward (train mode),
    by centred differences: what a backward exact for that forward returns."""
    gamma, beta = shaped(case.gamma, layout), shaped(case.beta, layout)
    x = case.xs[0].copy()
    h = 1e-5

    def loss(x_, g_, b_):
        out, _ = forward_call(forward, user_file, kind, x_, g_, b_, norm_param(kind, case, seed_shape=seed), case.G)
        return float(np.sum(np.asarray(out, dtype=np.float64) * case.dout))

    grads = {}
    for key, arr in (("dx", x), ("dgamma", gamma), ("dbeta", beta)):
        grad = np.zeros_like(arr)
        for ix in np.ndindex(*arr.shape):
            total = 0.0
            for sign in (1, -1):
                args = {"dx": x, "dgamma": gamma, "dbeta": beta}
                args = {k: v.copy() for k, v in args.items()}
                args[key][ix] += sign * h
                total += sign * loss(args["dx"], args["dgamma"], args["dbeta"])
            grad[ix] = total / (2 * h)
        grads[key] = plain(grad)
    return grads


def _is_stub(out) -> bool:
    """A forward output no finished forward returns: None, not numeric, constant."""
    try:
        arr = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        return True
    return out is None or arr.size <= 1 or np.ptp(arr) == 0


def _backward_case(fn, forward, user_file, kind, i: int, case: Case, layout: str, seed=None) -> dict:
    gamma, beta = shaped(case.gamma, layout), shaped(case.beta, layout)
    try:
        out, cache = forward_call(forward, user_file, kind, case.xs[0].copy(), gamma, beta,
                                  norm_param(kind, case, seed_shape=seed), case.G)
    except UserError as err:
        return {"forward_error": case_error(err, case)}
    rec = {"out": plain(out)}
    try:
        dout = case.dout.copy()
        dx, dgamma, dbeta = returned(call(fn, user_file, dout, cache), ("dx", "dgamma", "dbeta"))
        rec.update(dx=plain(dx), dgamma=plain(dgamma), dbeta=plain(dbeta),
                   modified=["dout"] if not np.array_equal(dout, case.dout) else [])
    except UserError as err:
        if _is_stub(out):  # the backward had nothing to work on
            return {"forward_error": {**error_info("not-implemented", "the forward is not implemented yet"),
                                      "when": case.describe()}}
        if cache is None:  # the forward's output is written, its cache not yet
            return {"forward_error": {**error_info("not-implemented", "the forward returns None as its cache"),
                                      "when": case.describe()}}
        rec["error"] = case_error(err, case)
    if i < NUMERIC_CASES:
        try:
            rec["numeric"] = _numeric_grads(forward, user_file, kind, case, layout, seed)
        except (UserError, TypeError, ValueError):
            rec["numeric"] = None
    return rec


def run_backward(fn, forward, name: str, user_file: str | None = None) -> dict:
    """The user's backward on the cache of the user's own forward (train mode), per gamma layout."""
    kind = KIND[name]
    layouts = GAMMA_LAYOUTS.get(kind, (DEFAULT_LAYOUT,))
    seed = None
    if kind in RUNNING:
        seed = seed_shape(run_init(forward, kind, user_file), cases(kind)[1].gamma.size)
    return {"doc_layout": doc_layout(forward) if kind in GAMMA_LAYOUTS else None,
            "layouts": {lay: [_backward_case(fn, forward, user_file, kind, i, c, lay, seed)
                              for i, c in enumerate(cases(kind))] for lay in layouts}}


def run_function(namespace: dict, name: str, user_file: str | None = None) -> dict:
    """Raw results for function ``name`` of ``namespace``: {'raw': ...}, or {'missing_forward':
    name} for a backward whose forward is not defined."""
    if name in FORWARD_OF:
        forward = namespace.get(FORWARD_OF[name])
        if not callable(forward):
            return {"missing_forward": FORWARD_OF[name]}
        return {"raw": run_backward(namespace[name], forward, name, user_file)}
    return {"raw": run_forward(namespace[name], name, user_file)}
