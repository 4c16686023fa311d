"""Compare recorded outputs with the reference and with known mistakes; say what is wrong.

For each output (out, running statistics, test-mode out, dx, dgamma, dbeta) the
reference and the mutants come from ``mutants`` (float64, the probe's cases). An
output is judged *right*, *right in a shape that differs only by size-1 axes*
(accepted, with a note; wrong under ``strict``), *missing* (not returned, or a
stub: constant, zeros, its input unchanged) or *wrong*; a wrong output is matched
against the mutants, and a mutant that matches on every case names the mistake.
A wrong dx that matches none is projected onto the three terms of the closed form,

    dx = ivar * dxhat  -  ivar * mean(dxhat)  -  ivar * xhat * mean(dxhat * xhat)
         (direct path)    (through the mean)     (through the variance)

and compared with the numeric gradient of the user's own forward, to say whether
the backward or the forward is the one that differs.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..gradcheck import rel_error
from . import mutants as M
from . import probe
from .catalog import CATALOG, FunctionReport

OK_TOL = 1e-7  # a correct float64 implementation is at round-off
MATCH_TOL = 1e-6  # a mutant "matches" within this
CONSISTENT_TOL = 1e-6  # a backward "is the gradient of" a forward within this (numeric differences)
PARAM_KEYS = ("dgamma", "dbeta", "running_mean", "running_var")  # outputs shaped like a parameter
UNFINISHED_ERRORS = ("NotImplementedError", "returned-None", "not-implemented")  # what a stub does

__all__ = ["analyze", "CATALOG", "FunctionReport"]


def _array(rec):
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


def _stub(u: np.ndarray, given) -> bool:
    """An output a function that is not written yet returns: constant (zeros), or its input."""
    if u.size <= 1 or np.ptp(u) == 0:
        return True
    return given is not None and u.shape == given.shape and np.array_equal(u, given)


class _Output:
    """One output of one function across cases: user arrays vs reference and mutants."""

    def __init__(self, key: str):
        self.key = key
        self.user: list = []
        self.ref: list[np.ndarray] = []
        self.given: list = []
        self.mutants: dict[str, list] = {}

    def add(self, user_rec, ref, mutants: dict[str, np.ndarray], given=None):
        self.user.append(_array(user_rec))
        self.ref.append(np.asarray(ref))
        self.given.append(given)
        for name, m in mutants.items():
            self.mutants.setdefault(name, []).append(m)

    def judge(self, report: FunctionReport, strict: bool) -> str:
        """'right', 'lenient', 'missing' or 'wrong'; records the error and diagnoses."""
        if not self.ref:
            return "right"
        if all(u is None or _stub(u, g) for u, g in zip(self.user, self.given)):
            report.errors[self.key] = float("inf")
            return "missing"
        errors = [rel_err(u, r) for u, r in zip(self.user, self.ref)]
        report.errors[self.key] = max(errors)
        verdict = "right" if max(errors) < OK_TOL else "wrong"
        mismatched = [(u, r) for u, r in zip(self.user, self.ref) if u is not None and u.shape != r.shape]
        if mismatched:  # say it with the largest case: (1, 4) for (4,) reads better than (1, 1) for (1,)
            verdict = self._shape(report, *max(mismatched, key=lambda ur: ur[1].size), verdict, strict)
        if verdict == "wrong":
            self._match(report)
        return verdict

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

    def _match(self, report):
        for name, values in self.mutants.items():
            if all(u is not None and m is not None and u.size == np.size(m) and rel_err(u, np.asarray(m)) < MATCH_TOL
                   for u, m in zip(self.user, values)):
                for id_ in name.split("+"):
                    report.diagnose(id_.split(":")[0], f"{self.key} matches this mistake on every case")


def _conclude(report: FunctionReport, verdicts: dict[str, str], case_errors: list[dict], modified: set,
              strict: bool, primary: str) -> FunctionReport:
    """The status once every output and every case is judged. A function whose ``primary``
    output (out, dx) is not written yet is unfinished, whatever its other outputs are."""
    if modified:
        report.diagnose("inputs-modified", f"modified: {', '.join(sorted(modified))}")
    raised = [e for e in case_errors if e.get("type") not in UNFINISHED_ERRORS]
    missing = [k for k, v in verdicts.items() if v == "missing"]
    wrong = [k for k, v in verdicts.items() if v == "wrong"]
    if raised:
        report.exception = raised[0]
        report.status = "error"
        if raised[0].get("type") == "wrong-return":
            report.diagnose("wrong-shape", raised[0]["message"])
        elif not all(v == "missing" for v in verdicts.values()):
            report.note(f"it raised on {len(raised)} case(s); the other cases were compared")
    elif verdicts.get(primary) != "missing" and (wrong or (report.diagnoses and verdicts)):
        report.status = "wrong"
    elif missing or (case_errors and not verdicts):
        report.diagnoses = [d for d in report.diagnoses if d.id == "inputs-modified"]
        report.status = "unfinished"
        what = "all of it" if len(missing) == len(verdicts) else ", ".join(missing)
        report.diagnose("not-implemented", f"still to write: {what}")
        return report
    if report.status != "ok" and wrong and not report.diagnoses and not any(n.startswith("dx:") for n in report.notes):
        report.note(f"wrong outputs: {', '.join(wrong)} (no known mistake matches)")
    if missing and report.status != "ok":
        report.note(f"not implemented yet: {', '.join(missing)}")
    return report


def _group_errors(recs: list[dict]) -> list[dict]:
    return [r["error"] for r in recs if "error" in r]


# ----------------------------------------------------------------------------- forward


def analyze_forward(name: str, raw: dict, strict: bool = False) -> FunctionReport:
    kind = probe.KIND[name]
    reports = {layout: _forward_layout(name, kind, recs, strict) for layout, recs in raw["layouts"].items()}
    report = _pick_layout(reports, kind)
    if kind in probe.RUNNING and report.status == "ok":
        _judge_init(report, raw.get("init", {}), kind, strict)
    return report


def _forward_layout(name, kind, recs, strict) -> FunctionReport:
    report = FunctionReport(name, "ok")
    outputs = {k: _Output(k) for k in ("out", "running_mean", "running_var", "test out")}
    modified = set()
    for case, rec in zip(probe.cases(kind), recs):
        if "error" in rec:
            continue
        modified |= set(rec["modified"])
        for x, user in zip(case.xs[: probe.TRAIN_STEPS], rec["train_out"]):
            outputs["out"].add(user, M.forward_out(x, case, kind), M.forward_mutants(x, case, kind), given=x)
        if kind not in probe.RUNNING:
            continue
        ref_m, ref_v = M.running_stats(case, kind)
        mean_mutants, var_mutants = M.running_mutants(case, kind)
        outputs["running_mean"].add(rec["running_mean"], ref_m, mean_mutants)
        outputs["running_var"].add(rec["running_var"], ref_v, var_mutants)
        # test mode is judged against the user's own running statistics, so a wrong
        # running average is not blamed twice
        um, uv = _array(rec["running_mean"]), _array(rec["running_var"])
        C = case.shape[1]
        usable = um is not None and uv is not None and um.size == C and uv.size == C and (uv >= 0).all()
        use_m, use_v = (um.reshape(C), uv.reshape(C)) if usable else (ref_m, ref_v)
        xt = case.xs[-1]
        outputs["test out"].add(rec["test_out"], M.test_out(xt, case, kind, use_m, use_v),
                                M.test_mutants(xt, case, kind, use_m, use_v), given=xt)
    verdicts = {k: o.judge(report, strict) for k, o in outputs.items() if o.ref}
    for d in report.diagnoses:  # a slip found in test mode only says so
        if d.detail.startswith("test out") and d.id in ("eps-outside-sqrt", "eps-missing"):
            d.detail += " (in test mode)"
    return _conclude(report, verdicts, _group_errors(recs), modified, strict, "out")


def _pick_layout(reports: dict[str, FunctionReport], kind: str) -> FunctionReport:
    """The report of the gamma layout that works: right first, then one that ran."""
    ordered = list(reports.values())
    report = next((r for r in ordered if r.ok), None) or next((r for r in ordered if r.status != "error"),
                                                             ordered[0])
    if len(reports) > 1:  # the course documents both (1, C, 1, 1) and (C,)
        layout = next(k for k, r in reports.items() if r is report)
        report.note(f"gamma and beta were passed with shape {layout}")
        first_layout, first = next(iter(reports.items()))
        if report is not first and report.ok and first.diagnoses:
            report.note(f"with gamma and beta of shape {first_layout}, as the notebook passes them, it is wrong: "
                        + "; ".join(d.detail for d in first.diagnoses if d.detail))
    return report


def _judge_init(report: FunctionReport, init: dict, kind: str, strict: bool) -> None:
    """Missing running statistics: the starter code starts them at zeros."""
    if "error" in init:
        report.status = "wrong"
        report.diagnose("running-stats-init", f"with no running statistics in bn_param it raised "
                                              f"{init['error']['type']}: {init['error']['message']}")
        return
    case = probe.cases(kind)[1]
    mu, var = M.batch_stats(case.xs[0], kind)
    w = 1 - probe.MOMENTUM
    got = _array(init.get("running_var"))
    if got is None:
        return
    if rel_err(got, w * var) < MATCH_TOL:
        return
    if rel_err(got, probe.MOMENTUM + w * var) < MATCH_TOL:
        report.note("running_var starts at ones where the CS231n starter starts it at zeros: harmless "
                    f"(the difference shrinks by {probe.MOMENTUM} each training step)")
        return
    report.status = "wrong"
    report.diagnose("running-stats-init", "after one step from a bn_param without running statistics, "
                                          "running_var is neither what zeros nor what ones would give")


# ----------------------------------------------------------------------------- backward


def analyze_backward(name: str, raw: dict, strict: bool = False) -> FunctionReport:
    kind = probe.KIND[name]
    reports = {layout: _backward_layout(name, kind, recs, layout, strict) for layout, recs in raw["layouts"].items()}
    return _pick_layout(reports, kind)


def _backward_layout(name, kind, recs, layout, strict) -> FunctionReport:
    report = FunctionReport(name, "ok")
    forward_errors = [r["forward_error"] for r in recs if "forward_error" in r]
    if len(forward_errors) == len(recs):
        report.status = "skipped"
        e = forward_errors[0]
        why = ("is not implemented yet" if e["type"] in UNFINISHED_ERRORS
               else f"raised {e['type']}: {e['message']} (when {e['when']})")
        report.note(f"needs a working {probe.FORWARD_OF[name]} to build the cache: it {why}")
        return report
    outputs = {k: _Output(k) for k in ("dx", "dgamma", "dbeta")}
    cases, modified, numeric = probe.cases(kind), set(), []
    for case, rec in zip(cases, recs):
        if "forward_error" in rec or "error" in rec:
            continue
        modified |= set(rec["modified"])
        x, dout = case.xs[0], case.dout
        t1, t2, t3 = M.dx_terms(x, dout, case.gamma, kind, case.G)
        outputs["dx"].add(rec["dx"], t1 + t2 + t3, M.backward_mutants(x, dout, case, kind), given=dout)
        gshape = probe.shaped(case.gamma, layout).shape
        ref_dg, ref_db, xhat = M.param_grads(x, dout, kind, case.G, gshape)
        axes, other = M.param_axes(kind), ((1,) if kind in ("batch", "layer") else (1, 2, 3))
        dg_mut = {"dgamma-not-summed": dout * xhat, "dgamma-uses-x": (dout * x).sum(axis=axes).reshape(gshape),
                  "wrong-axis": (dout * xhat).sum(axis=other)}
        db_mut = {"dbeta-not-summed": dout, "wrong-axis": dout.sum(axis=other)}
        if kind == "spatial":
            _, dg_mut["reshape-without-transpose"], db_mut["reshape-without-transpose"] = M.unshuffled_grads(
                x, dout, case.gamma)
        outputs["dgamma"].add(rec["dgamma"], ref_dg, dg_mut)
        outputs["dbeta"].add(rec["dbeta"], ref_db, db_mut)
        if rec.get("numeric_dx") is not None and _array(rec["dx"]) is not None:
            numeric.append((_array(rec["dx"]), _array(rec["numeric_dx"]), t1 + t2 + t3, np.abs(t1).max()))
    verdicts = {k: o.judge(report, strict) for k, o in outputs.items()}
    if verdicts["dx"] == "wrong":
        if not any(d.id.startswith(("missing-", "unbiased", "eps-", "wrong-axis", "reshape")) for d in report.diagnoses):
            for note in _paths_note(outputs["dx"].user, cases, kind):
                report.note(note)
        _consistency(report, numeric)
    return _conclude(report, verdicts, _group_errors(recs), modified, strict, "dx")


def _consistency(report: FunctionReport, numeric: list) -> None:
    """Is the wrong dx the gradient of the user's own forward, and is that forward right?

    Compared on the scale of the direct path ivar * dxhat: with N = 2, dx is of the
    order of eps and elementwise relative errors of a numeric gradient mean nothing."""
    if not numeric:
        return

    def gap(a, b, scale):
        return float(np.abs(a.reshape(b.shape) - b).max() / max(scale, 1e-300)) if a.size == b.size else np.inf

    backward_vs_own = max(gap(u, n, s) for u, n, _, s in numeric)
    forward_vs_ref = max(gap(n, r, s) for _, n, r, s in numeric)
    if backward_vs_own < CONSISTENT_TOL:
        report.note("your backward is consistent with your forward (it is the numeric gradient of your own forward "
                    f"to {backward_vs_own:.0e}); the forward is what differs from the reference")
    elif forward_vs_ref < CONSISTENT_TOL:
        report.note("your forward is right (its numeric gradient matches the reference); your backward is not its "
                    f"gradient (they differ by {backward_vs_own:.1e} of the gradient's scale)")
    else:
        report.note("your backward is not the gradient of your forward, and your forward differs from the reference "
                    "too: fix the forward first")


def _paths_note(user_dx: list, cases: list, kind: str) -> list[str]:
    """Least-squares fit of (user dx - reference dx) on the closed form's three path terms."""
    rows, errs = [], []
    for u, case in zip(user_dx, cases):
        if u is None or u.size != case.dout.size:
            continue
        t = M.dx_terms(case.xs[0], case.dout, case.gamma, kind, case.G)
        ref = t[0] + t[1] + t[2]
        rows.append(np.stack([ti.ravel() for ti in t], axis=1))
        errs.append(u.ravel() - ref.ravel())
    if not rows:
        return ["dx: could not be compared (wrong size or not an array)"]
    A, e = np.concatenate(rows), np.concatenate(errs)
    coef, *_ = np.linalg.lstsq(A, e, rcond=None)
    residual = float(np.linalg.norm(e - A @ coef) / max(np.linalg.norm(e), 1e-300))
    names = ("direct path (through xhat)", "path through the mean", "path through the variance")
    notes = []
    for name, c in zip(names, coef):
        if abs(c) > 1e-3:
            notes.append(f"dx: the {name} is weighted {1 + c:.3g} instead of 1")
    if residual > 0.05:
        notes.append(f"dx: {residual:.0%} of the error lies along none of the three paths "
                     "(check shapes, axes and the order of operations)")
    return notes or ["dx: wrong, but not along any path"]


# ----------------------------------------------------------------------------- entry


def analyze(name: str, result: dict, strict: bool = False) -> FunctionReport:
    """A FunctionReport from the probe's result for ``name``."""
    # some mutants divide by N-1 = 0 or by sqrt(0) on the D=1 cases: NaN there, they just never match
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if "missing_forward" in result:
            return FunctionReport(name, "skipped",
                                  notes=[f"needs {result['missing_forward']} to build the cache; define it too"])
        if name in probe.FORWARD_OF:
            return analyze_backward(name, result["raw"], strict)
        return analyze_forward(name, result["raw"], strict)
