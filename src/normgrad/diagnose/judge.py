"""Judge one output of one function across the cases, on the output's own scale.

An output is judged by the largest difference over the larger of the reference's
largest value and the output's natural scale (for dx the direct path ivar * dxhat,
for dgamma / dbeta dout), so rounding noise on a true gradient that is zero (N = 2,
D = 1) is never a failure; the notebook's ``rel_error`` is reported beside it. It is
*right*, *right in a shape that differs only by size-1 axes* (accepted, with a note;
wrong under ``strict``), *missing* (not returned, or a stub: constant, zeros, its
input unchanged) or *wrong*; a wrong output is matched against the mutants (mistakes
alone and combined), and the simplest combination that matches on every case names
the mistakes.
"""

from __future__ import annotations

import numpy as np

from ..gradcheck import rel_error
from .catalog import FunctionReport

OK_TOL = 1e-7  # on the output's own scale: round-off is ~1e-15, eps in the wrong place ~1e-6 or more
MATCH_TOL = 1e-8  # a mutant "matches" within this (or explains all but 1e-3 of the error)
PARAM_KEYS = ("dgamma", "dbeta", "running_mean", "running_var")  # outputs shaped like a parameter


def as_array(rec):
    """The array a probe recorded (``calling.plain``), or None when it is not numeric."""
    if rec is None or "not_array" in rec:
        return None
    return np.asarray(rec["data"], dtype=np.float64).reshape(rec["shape"])


def rel_err(a, b) -> float:
    """CS231n's relative error; inf when a is missing, of another size, or not finite."""
    if a is None or a.size != b.size:
        return float("inf")
    a = a.reshape(b.shape)
    if not np.isfinite(a).all():
        return float("inf")
    return rel_error(a, b)


def scale_err(a, b, scale: float = 0.0) -> float:
    """max |a - b| over the larger of max |b| and ``scale`` (the output's natural size);
    inf when a is missing, of another size, or not finite."""
    b = np.asarray(b, dtype=np.float64)
    if a is None or a.size != b.size or not np.isfinite(b).all():
        return float("inf")
    a = a.reshape(b.shape)
    if not np.isfinite(a).all():
        return float("inf")
    if a.size == 0:
        return 0.0
    d, s = float(np.abs(a - b).max()), max(float(np.abs(b).max()), scale)
    return d / s if s > 0 else (0.0 if d == 0 else float("inf"))


def _stub(u: np.ndarray, given) -> bool:
    """An output a function that is not written yet returns: constant (zeros), or its input."""
    if u is None or u.size <= 1 or np.ptp(u) == 0:
        return True
    return given is not None and u.shape == given.shape and np.array_equal(u, given)


class Output:
    """One output of one function across cases: user arrays vs reference and mutants."""

    def __init__(self, key: str):
        self.key = key
        self.user: list = []
        self.ref: list[np.ndarray] = []
        self.given: list = []
        self.scale: list[float] = []
        self.mutants: dict[str, list] = {}
        self.matched = False

    def add(self, user_rec, ref, mutants: dict[str, np.ndarray], given=None, scale: float = 0.0):
        self.user.append(as_array(user_rec))
        self.ref.append(np.asarray(ref))
        self.given.append(given)
        self.scale.append(scale)
        for name, m in mutants.items():
            self.mutants.setdefault(name, []).append(m)

    def judge(self, report: FunctionReport, strict: bool) -> str:
        """'right', 'lenient', 'missing' or 'wrong'; records the error and diagnoses."""
        if not self.ref:
            return "right"
        stub = (lambda u, g: u is None) if self.key.startswith("running") else _stub  # a scalar can be a mistake
        if all(stub(u, g) for u, g in zip(self.user, self.given)):
            report.errors[self.key] = float("inf")
            return "missing"
        errors = [scale_err(u, r, s) for u, r, s in zip(self.user, self.ref, self.scale)]
        report.errors[self.key] = max(errors)
        largest = max(range(len(self.ref)), key=lambda i: self.ref[i].size)  # the notebook's kind of case
        report.notebook[self.key] = rel_err(self.user[largest], self.ref[largest])
        verdict = "right" if max(errors) < OK_TOL else "wrong"
        mismatched = [(u, r) for u, r in zip(self.user, self.ref) if u is not None and u.shape != r.shape]
        if mismatched:  # say it with the largest case: (1, 4) for (4,) reads better than (1, 1) for (1,)
            verdict = self._shape(report, *max(mismatched, key=lambda ur: ur[1].size), verdict, strict)
        if verdict == "wrong":
            self.matched = self._match(report, max(errors)) or self._misplaced(report)
        return verdict

    def _misplaced(self, report) -> bool:
        """The right values in other places (a swapaxes or reshape not undone): x-shaped outputs."""
        if self.key in PARAM_KEYS:
            return False
        pairs = [(u, r) for u, r in zip(self.user, self.ref) if u is not None and u.size == r.size]
        if len(pairs) < len(self.ref) or not any(scale_err(u, r) > OK_TOL for u, r in pairs):
            return False
        if all(scale_err(np.sort(u.ravel()), np.sort(r.ravel())) < OK_TOL for u, r in pairs):
            report.diagnose("values-misplaced", f"{self.key} holds every right value, in other places")
            return True
        return False

    def _shape(self, report, u, r, verdict, strict) -> str:
        same_axes = u.size == r.size and tuple(s for s in u.shape if s != 1) == tuple(s for s in r.shape if s != 1)
        if same_axes and self.key in PARAM_KEYS:
            if verdict == "right" and not strict:
                if self.key.startswith("running"):
                    why = "test mode broadcasts it, so nothing breaks"
                else:
                    why = (f"the Solver's update (param -= lr * grad) would turn the parameter into shape "
                           f"{np.broadcast_shapes(u.shape, r.shape)}")
                report.note(f"{self.key} has shape {u.shape} where the notebook expects {r.shape}: the values are "
                            f"right and broadcasting hides it here, but {why}")
                return "lenient"
            report.diagnose("wrong-shape", f"{self.key} has shape {u.shape}, expected {r.shape}")
            return "wrong"
        if u.ndim > r.ndim and self.key not in PARAM_KEYS:
            report.diagnose("extra-dimensions", f"{self.key} has shape {u.shape}, expected {r.shape}")
        else:
            report.diagnose("wrong-shape", f"{self.key} has shape {u.shape}, expected {r.shape}")
        return "wrong"

    def _match(self, report, ref_err: float) -> bool:
        """Name the simplest combination of mistakes that matches on every case."""
        tol = max(MATCH_TOL, 1e-3 * ref_err) if np.isfinite(ref_err) else MATCH_TOL
        hits = [name for name, values in self.mutants.items()
                if all(u is not None and m is not None and scale_err(u, m, s) < tol
                       for u, m, s in zip(self.user, values, self.scale))]
        if not hits:
            return False
        best = min(hits, key=lambda h: len(h.split("+")))
        for part in best.split("+"):
            id_, _, variant = part.partition(":")
            detail = (f"{self.key}: {variant.strip()}" if " " in variant
                      else f"{self.key} matches this mistake on every case")
            report.diagnose(id_, detail)
        return True
