"""Run a user's CS231n-style norm functions on fixed cases and record what they return.

This is the only code that calls user functions; it runs inside the checker's
child process (or in-process for ``check(namespace)``). It records raw outputs as
plain lists so they travel as JSON; ``analysis`` compares them with the reference.

Cases are generated from a fixed seed, so the parent process rebuilds exactly the
same inputs. Inputs have a non-zero mean per feature, gamma and beta are random,
upstream gradients are random, and shapes include N=2, D=1 and G=1.

Conventions are taken out of the comparison: batch-norm kinds get explicit,
non-trivial running statistics in ``bn_param``, so a correct function passes
whatever its starter code does when they are missing (that is probed on its own,
``run_init``). Group norm is run with gamma shaped (1, C, 1, 1) and (C,), both
documented by the course. Each case runs on its own: a function that raises on one
case (G = 1, say) is still compared on the others, and the raising case is named.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from pathlib import Path

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


PROGRESS: Path | None = None  # the child sets it: the name of the user function running now is written there
_running: list = [None]


def _progress(name: str) -> None:
    if PROGRESS is not None and _running[0] != name:
        _running[0] = name
        try:
            PROGRESS.write_text(name)
        except OSError:
            pass


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


class UserError(Exception):
    """The user's code raised; carries a short, JSON-ready description."""

    def __init__(self, info: dict):
        super().__init__(info["message"])
        self.info = info


def error_info(type_: str, message: str, file: str | None = None, line: int | None = None,
               code: str | None = None) -> dict:
    """The JSON-ready description of a problem every report uses."""
    return {"type": type_, "message": message, "file": file, "line": line, "code": code}


def describe_exception(err: BaseException, user_file: str | None) -> dict:
    """Type, message, and the innermost frame in the user's file (else the last frame)."""
    frames = traceback.extract_tb(err.__traceback__)
    where = None
    for frame in frames:
        if user_file is None or frame.filename == user_file:
            where = frame
    where = where or (frames[-1] if frames else None)
    message = str(err)
    if isinstance(err, SystemExit):
        message = f"sys.exit({err.code!r}) called"
    if where is None:
        return error_info(type(err).__name__, message[:500])
    return error_info(type(err).__name__, message[:500], where.filename, where.lineno, (where.line or "")[:200])


def _call(fn, user_file, *args):
    _progress(getattr(fn, "__name__", "?"))
    try:
        return fn(*args)
    except (Exception, SystemExit) as err:  # noqa: BLE001 - anything the user's code raises is reported
        raise UserError(describe_exception(err, user_file)) from None


def _plain(a):
    """An output as nested lists of floats, or a description when it is not numeric."""
    if a is None:
        return None
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        return {"not_array": type(a).__name__}
    return {"shape": list(arr.shape), "data": arr.ravel().tolist()}


def _returned(result, names: tuple[str, ...]):
    """``result`` if it is a tuple of len(names) items, else a UserError: 'returned-None' (a
    function with no body yet returns None) or 'wrong-return'."""
    if result is None:
        raise UserError(error_info("returned-None", f"returned None, expected ({', '.join(names)})"))
    if not (isinstance(result, tuple) and len(result) == len(names)):
        raise UserError(error_info("wrong-return",
                                   f"returned {type(result).__name__}, expected ({', '.join(names)})"))
    return result


def norm_param(kind: str, case: Case, mode: str = "train", seed_shape=None) -> dict:
    """The bn_param / ln_param / gn_param a run starts with: explicit running statistics
    (copies) for the batch-norm kinds, so no default is relied on; in ``seed_shape`` when the
    user's own code creates them in that shape ((1, C, 1, 1), say)."""
    if kind not in RUNNING:  # the notebooks pass mode too; a layer norm built on batchnorm_forward reads it
        return {"mode": "train", "eps": EPS}
    shape = tuple(seed_shape) if seed_shape else case.running_mean.shape
    return {"mode": mode, "eps": EPS, "momentum": MOMENTUM, "running_mean": case.running_mean.reshape(shape).copy(),
            "running_var": case.running_var.reshape(shape).copy()}


def seed_shape(init: dict, C: int):
    """The shape the user's code gives running statistics it creates ((1, -1, 1, 1): -1 for C),
    if it holds C values in another shape than (C,)."""
    rec = init.get("running_mean")
    if isinstance(rec, dict) and "shape" in rec and int(np.prod(rec["shape"])) == C and len(rec["shape"]) > 1:
        shape = list(rec["shape"])
        shape[shape.index(C)] = -1
        return tuple(shape)
    return None


def _forward_call(fn, user_file, kind, x, gamma, beta, param, G):
    if kind == "group":
        return _returned(_call(fn, user_file, x, gamma, beta, G, param), ("out", "cache"))
    return _returned(_call(fn, user_file, x, gamma, beta, param), ("out", "cache"))


def _modified(before: dict, after: dict) -> list[str]:
    return [k for k in before if not np.array_equal(before[k], after[k], equal_nan=True)]


def _case_error(err: UserError, case: Case) -> dict:
    return {**err.info, "when": case.describe()}


def _forward_case(fn, user_file, kind, case: Case, layout: str, seed=None) -> dict:
    """Train steps, then test mode (batch-norm kinds), on one case."""
    rec = {"train_out": [], "modified": []}
    param = norm_param(kind, case, seed_shape=seed)
    gamma, beta = shaped(case.gamma, layout), shaped(case.beta, layout)
    try:
        for x in case.xs[:TRAIN_STEPS]:
            inputs = {"x": x.copy(), "gamma": gamma.copy(), "beta": beta.copy()}
            before = {k: v.copy() for k, v in inputs.items()}
            out, _ = _forward_call(fn, user_file, kind, inputs["x"], inputs["gamma"], inputs["beta"], param, case.G)
            rec["train_out"].append(_plain(out))
            rec["modified"] += [k for k in _modified(before, inputs) if k not in rec["modified"]]
        if kind in RUNNING:
            rec["running_mean"] = _plain(param.get("running_mean"))
            rec["running_var"] = _plain(param.get("running_var"))
            param["mode"] = "test"
            out, _ = _forward_call(fn, user_file, kind, case.xs[-1].copy(), gamma.copy(), beta.copy(), param, case.G)
            rec["test_out"] = _plain(out)
    except UserError as err:
        rec["error"] = _case_error(err, case)
    return rec


PROBE_CASE = 2  # the case the designed probes are built on (G > 1 with C // G > 1 for group norm)


def _designed(fn, user_file, kind, layout: str, seed=None) -> dict:
    """What the forward computes, probed on designed inputs (train mode, gamma = 1, beta = 0
    unless said): x varying along one axis only (the statistics see variation only along the
    axes they reduce over, so the output is zero along the others), a constant x (zero when
    centred), x with one channel set (group norm: which channels share a group), x whose
    variance is eps (where eps enters), and distinct gamma / beta values (where each lands)."""
    case = cases(kind)[PROBE_CASE]
    shape, C = case.shape, case.gamma.size
    ones, zeros = shaped(np.ones(C), layout), shaped(np.zeros(C), layout)
    rng = np.random.default_rng(7)

    def run(x, gamma=ones, beta=zeros):
        out, _ = _forward_call(fn, user_file, kind, x, gamma.copy(), beta.copy(), norm_param(kind, case, seed_shape=seed),
                               case.G)
        return _plain(out)

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


def AFFINE_GAMMA(C):  # noqa: N802 - distinct values, so each element's factor says which gamma it got
    return 1.0 + 0.25 * np.arange(1, C + 1)


def AFFINE_BETA(C):  # noqa: N802
    return 10.0 * np.arange(1, C + 1)


def tiny_input(case: Case, kind: str) -> np.ndarray:
    """case.xs[0] rescaled so each group's (biased) variance is exactly EPS: where eps enters
    then changes the output by tens of percent (inside the sqrt: xhat's std is 1/sqrt(2))."""
    from .mutants import view

    x = case.xs[0]
    xv, axes = view(x, kind, case.G)
    mu, sd = xv.mean(axis=axes, keepdims=True), xv.std(axis=axes, keepdims=True)
    sd = np.where(sd > 0, sd, 1.0)
    return (mu + np.sqrt(EPS) * (xv - mu) / sd).reshape(x.shape)


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
    result["probes"] = {lay: _designed(fn, user_file, kind, lay, seed) for lay in layouts}
    return result


def run_init(fn, kind: str, user_file: str | None) -> dict:
    """One training step with a bn_param that has no running statistics yet: what the
    function starts them at (CS231n's starter: zeros), or the error it raises."""
    case = cases(kind)[1]
    param = {"mode": "train", "eps": EPS, "momentum": MOMENTUM}
    try:
        _forward_call(fn, user_file, kind, case.xs[0].copy(), case.gamma.copy(), case.beta.copy(), param, case.G)
    except UserError as err:
        return {"error": err.info}
    return {"running_mean": _plain(param.get("running_mean")), "running_var": _plain(param.get("running_var"))}


def _numeric_grads(forward, user_file, kind, case: Case, layout: str, seed=None) -> dict:
    """d sum(forward(x) * dout) / d(x, gamma, beta) of the user's own forward (train mode),
    by centred differences: what a backward exact for that forward returns."""
    gamma, beta = shaped(case.gamma, layout), shaped(case.beta, layout)
    x = case.xs[0].copy()
    h = 1e-5

    def loss(x_, g_, b_):
        out, _ = _forward_call(forward, user_file, kind, x_, g_, b_, norm_param(kind, case, seed_shape=seed), case.G)
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
        grads[key] = _plain(grad)
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
        out, cache = _forward_call(forward, user_file, kind, case.xs[0].copy(), gamma, beta,
                                   norm_param(kind, case, seed_shape=seed), case.G)
    except UserError as err:
        return {"forward_error": _case_error(err, case)}
    rec = {"out": _plain(out)}
    try:
        dout = case.dout.copy()
        dx, dgamma, dbeta = _returned(_call(fn, user_file, dout, cache), ("dx", "dgamma", "dbeta"))
        rec.update(dx=_plain(dx), dgamma=_plain(dgamma), dbeta=_plain(dbeta),
                   modified=["dout"] if not np.array_equal(dout, case.dout) else [])
    except UserError as err:
        if _is_stub(out):  # the backward had nothing to work on
            return {"forward_error": {**error_info("not-implemented", "the forward is not implemented yet"),
                                      "when": case.describe()}}
        if cache is None:  # the forward's output is written, its cache not yet
            return {"forward_error": {**error_info("not-implemented", "the forward returns None as its cache"),
                                      "when": case.describe()}}
        rec["error"] = _case_error(err, case)
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
