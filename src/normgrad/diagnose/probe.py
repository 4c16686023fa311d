"""Run a user's CS231n-style norm functions on fixed cases and record what they return.

This is the only code that calls user functions; it runs inside the checker's
child process (or in-process for ``check(namespace)``). It records raw outputs as
plain lists so they travel as JSON; ``analysis`` compares them with the reference.

Cases are generated from a fixed seed, so the parent process rebuilds exactly the
same inputs. Inputs have a non-zero mean per feature, gamma and beta are random,
upstream gradients are random, and shapes include N=2 and D=1.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

import numpy as np

EPS = 1e-5
MOMENTUM = 0.9
TRAIN_STEPS = 3

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

SHAPES = {
    "batch": [(2, 1), (5, 3), (9, 4), (16, 2)],
    "layer": [(2, 1), (3, 5), (6, 4), (4, 7)],
    "spatial": [(2, 1, 1, 1), (3, 2, 2, 2), (4, 3, 2, 3)],
    "group": [(2, 2, 1, 1, 1), (3, 4, 2, 2, 2), (2, 6, 3, 2, 3), (2, 4, 2, 2, 4)],  # last entry: G
}


@dataclass
class Case:
    """One input set. ``xs`` holds TRAIN_STEPS training batches and one test batch."""

    shape: tuple[int, ...]
    G: int | None
    xs: list[np.ndarray]
    gamma: np.ndarray
    beta: np.ndarray
    dout: np.ndarray


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
        pshape = (1, C, 1, 1) if kind == "group" else (C,)
        gamma, beta = rng.normal(1.0, 0.5, pshape), rng.normal(0.0, 0.5, pshape)
        out.append(Case(shape, G, xs, gamma, beta, rng.standard_normal(shape)))
    return out


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
    """``result`` if it is a tuple of len(names) items, else a wrong-return UserError."""
    if not (isinstance(result, tuple) and len(result) == len(names)):
        raise UserError(error_info("wrong-return",
                                   f"returned {type(result).__name__}, expected ({', '.join(names)})"))
    return result


def _norm_param(kind: str) -> dict:
    """The bn_param / ln_param / gn_param a fresh training run starts with."""
    return {"mode": "train", "eps": EPS, "momentum": MOMENTUM} if kind in ("batch", "spatial") else {"eps": EPS}


def _forward_call(fn, user_file, kind, x, gamma, beta, param, G):
    if kind == "group":
        return _returned(_call(fn, user_file, x, gamma, beta, G, param), ("out", "cache"))
    return _returned(_call(fn, user_file, x, gamma, beta, param), ("out", "cache"))


def _snapshot(arrays: dict) -> dict:
    return {k: np.array(v, copy=True) for k, v in arrays.items()}


def _modified(before: dict, after: dict) -> list[str]:
    return [k for k in before if not np.array_equal(before[k], after[k], equal_nan=True)]


def run_forward(fn, name: str, user_file: str | None = None) -> dict:
    """Train steps (with running statistics for batch-norm kinds), then test mode, per case."""
    kind = KIND[name]
    records = []
    for case in cases(kind):
        rec = {"train_out": [], "modified": []}
        param = _norm_param(kind)
        for x in case.xs[:TRAIN_STEPS]:
            inputs = {"x": x.copy(), "gamma": case.gamma.copy(), "beta": case.beta.copy()}
            before = _snapshot(inputs)
            out, _ = _forward_call(fn, user_file, kind, inputs["x"], inputs["gamma"], inputs["beta"], param, case.G)
            rec["train_out"].append(_plain(out))
            rec["modified"] += [k for k in _modified(before, inputs) if k not in rec["modified"]]
        if kind in ("batch", "spatial"):
            rec["running_mean"] = _plain(param.get("running_mean"))
            rec["running_var"] = _plain(param.get("running_var"))
            param["mode"] = "test"
            out, _ = _forward_call(fn, user_file, kind, case.xs[-1].copy(), case.gamma.copy(), case.beta.copy(),
                                   param, case.G)
            rec["test_out"] = _plain(out)
        records.append(rec)
    return {"cases": records}


def run_backward(fn, forward, name: str, user_file: str | None = None) -> dict:
    """The user's backward on the cache of the user's own forward (train mode)."""
    kind = KIND[name]
    records = []
    for case in cases(kind):
        param = _norm_param(kind)
        x = case.xs[0].copy()
        _, cache = _forward_call(forward, user_file, kind, x, case.gamma.copy(), case.beta.copy(), param, case.G)
        dout = case.dout.copy()
        dx, dgamma, dbeta = _returned(_call(fn, user_file, dout, cache), ("dx", "dgamma", "dbeta"))
        records.append({"dx": _plain(dx), "dgamma": _plain(dgamma), "dbeta": _plain(dbeta),
                        "modified": ["dout"] if not np.array_equal(dout, case.dout) else []})
    return {"cases": records}


def run_function(namespace: dict, name: str, user_file: str | None = None) -> dict:
    """Raw results for function ``name`` of ``namespace``: {'raw': ...}, {'error': info},
    or {'missing_forward': name} for a backward whose forward is not defined."""
    try:
        if name in FORWARD_OF:
            forward = namespace.get(FORWARD_OF[name])
            if not callable(forward):
                return {"missing_forward": FORWARD_OF[name]}
            return {"raw": run_backward(namespace[name], forward, name, user_file)}
        return {"raw": run_forward(namespace[name], name, user_file)}
    except UserError as err:
        return {"error": err.info}
