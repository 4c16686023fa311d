"""Calling a user's function: the one place the user's code is called, with the
param dict it gets, what it must return, and what it raised as a JSON-ready record.

It runs inside the checker's child process (or in-process for ``check(namespace)``).
Outputs are recorded as plain lists so they travel as JSON. The child sets
``PROGRESS``: the name of the user function running now is written there, so a hang
or a crash is blamed on the function that was running.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np

from .inputs import EPS, MOMENTUM, RUNNING, Case

PROGRESS: Path | None = None  # the child sets it: the name of the user function running now is written there
_running: list = [None]


def _progress(name: str) -> None:
    if PROGRESS is not None and _running[0] != name:
        _running[0] = name
        try:
            PROGRESS.write_text(name)
        except OSError:
            pass


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


def call(fn, user_file, *args):
    """fn(*args), with whatever it raises (SystemExit too) as a UserError."""
    _progress(getattr(fn, "__name__", "?"))
    try:
        return fn(*args)
    except (Exception, SystemExit) as err:  # noqa: BLE001 - anything the user's code raises is reported
        raise UserError(describe_exception(err, user_file)) from None


def plain(a):
    """An output as nested lists of floats, or a description when it is not numeric."""
    if a is None:
        return None
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        return {"not_array": type(a).__name__}
    return {"shape": list(arr.shape), "data": arr.ravel().tolist()}


def returned(result, names: tuple[str, ...]):
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


def forward_call(fn, user_file, kind, x, gamma, beta, param, G):
    """The user's forward on one input: (out, cache); group norm also gets G."""
    if kind == "group":
        return returned(call(fn, user_file, x, gamma, beta, G, param), ("out", "cache"))
    return returned(call(fn, user_file, x, gamma, beta, param), ("out", "cache"))


def case_error(err: UserError, case: Case) -> dict:
    """What the user's code raised, and on which case."""
    return {**err.info, "when": case.describe()}
