"""Compare recorded outputs with the reference and with known mistakes; say what is wrong.

For each output (out, running statistics, test-mode out, dx, dgamma, dbeta) the
reference and the mutants come from ``mutants`` (float64, on the probe's ``inputs``).
Each output is judged on its own scale (``judge``): right, right in a shape that
differs only by size-1 axes, missing, or wrong with the simplest combination of
mistakes that matches on every case. A wrong forward with no match is explained by
the designed probes (``findings``). A wrong backward is judged against the gradient
of the user's own forward first, and a wrong dx that matches none is projected onto
the closed form's three paths (``causality``). ``verdict`` turns the outputs'
verdicts and the cases' errors into the function's status.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import mutants as M
from .catalog import CATALOG, FunctionReport
from .causality import OWN_TOL, own_forward_explains, paths_notes
from .findings import EXPECTED_AXES, PROBE_ZERO, probe_findings
from .inputs import FORWARD_OF, KIND, MOMENTUM, RUNNING, TRAIN_STEPS, cases, shaped
from .judge import MATCH_TOL, OK_TOL, PARAM_KEYS, Output, as_array, rel_err, scale_err
from .verdict import PY2_NAMES, UNFINISHED_ERRORS, conclude, errors_of, pick_layout, unfinished_error

__all__ = ["analyze", "CATALOG", "FunctionReport",
           # where they live: judge, findings, causality, verdict
           "analyze_forward", "analyze_backward", "rel_err", "scale_err", "OK_TOL", "MATCH_TOL", "OWN_TOL",
           "PROBE_ZERO", "EXPECTED_AXES", "PARAM_KEYS", "UNFINISHED_ERRORS", "PY2_NAMES"]


# ----------------------------------------------------------------------------- forward


def analyze_forward(name: str, raw: dict, strict: bool = False) -> FunctionReport:
    kind = KIND[name]
    reports = {layout: _forward_layout(name, kind, recs, strict, raw.get("probes", {}).get(layout))
               for layout, recs in raw["layouts"].items()}
    report = pick_layout(reports, kind, raw.get("doc_layout"))
    if kind in RUNNING and report.status == "ok":
        _judge_init(report, raw.get("init", {}), kind, strict)
    return report


def _add_running(outputs: dict[str, Output], rec: dict, case, kind: str) -> None:
    """Running statistics and the test-mode output of one case."""
    ref_m, ref_v = M.running_stats(case, kind)
    mean_mutants, var_mutants = M.running_mutants(case, kind)
    outputs["running_mean"].add(rec["running_mean"], ref_m, mean_mutants)
    outputs["running_var"].add(rec["running_var"], ref_v, var_mutants)
    # test mode is judged against the user's own running statistics, so a wrong
    # running average is not blamed twice
    um, uv = as_array(rec["running_mean"]), as_array(rec["running_var"])
    C = case.shape[1]
    usable = (um is not None and uv is not None and um.size in (1, C) and uv.size in (1, C)
              and np.isfinite(uv).all() and (uv >= 0).all())
    use_m, use_v = ((np.broadcast_to(um.ravel(), C).copy(), np.broadcast_to(uv.ravel(), C).copy()) if usable
                    else (ref_m, ref_v))
    xt = case.xs[-1]
    outputs["test out"].add(rec["test_out"], M.test_out(xt, case, kind, use_m, use_v),
                            M.test_mutants(xt, case, kind, use_m, use_v), given=xt)


def _forward_layout(name, kind, recs, strict, probes=None) -> FunctionReport:
    report = FunctionReport(name, "ok")
    outputs = {k: Output(k) for k in ("out", "running_mean", "running_var", "test out")}
    modified = set()
    for case, rec in zip(cases(kind), recs):
        if "error" in rec:
            continue
        modified |= set(rec["modified"])
        for x, user in zip(case.xs[:TRAIN_STEPS], rec["train_out"]):
            outputs["out"].add(user, M.forward_out(x, case, kind), M.forward_mutants(x, case, kind), given=x)
        if kind in RUNNING:
            _add_running(outputs, rec, case, kind)
    verdicts = {k: o.judge(report, strict) for k, o in outputs.items() if o.ref}
    if verdicts.get("out") == "wrong" and not outputs["out"].matched and probes:
        probe_findings(report, kind, probes)
    for d in report.diagnoses:  # a slip found in test mode only says so
        if d.detail.startswith("test out") and d.id in ("eps-outside-sqrt", "eps-missing"):
            d.detail += " (in test mode)"
    return conclude(report, verdicts, errors_of(recs), modified, strict, "out")


def _judge_init(report: FunctionReport, init: dict, kind: str, strict: bool) -> None:
    """Missing running statistics: the starter code starts them at zeros."""
    if "error" in init:
        report.status = "wrong"
        report.diagnose("running-stats-init", f"with no running statistics in bn_param it raised "
                                              f"{init['error']['type']}: {init['error']['message']}")
        return
    case = cases(kind)[1]
    mu, var = M.batch_stats(case.xs[0], kind)
    w = 1 - MOMENTUM
    got = as_array(init.get("running_var"))
    if got is None:
        return
    if rel_err(got, w * var) < MATCH_TOL:
        return
    if rel_err(got, MOMENTUM + w * var) < MATCH_TOL:
        report.note("running_var starts at ones where the CS231n starter starts it at zeros: harmless "
                    f"(the difference shrinks by {MOMENTUM} each training step)")
        return
    report.status = "wrong"
    report.diagnose("running-stats-init", "after one step from a bn_param without running statistics, "
                                          "running_var is neither what zeros nor what ones would give")


# ----------------------------------------------------------------------------- backward


def analyze_backward(name: str, raw: dict, strict: bool = False) -> FunctionReport:
    kind = KIND[name]
    reports = {layout: _backward_layout(name, kind, recs, layout, strict) for layout, recs in raw["layouts"].items()}
    return pick_layout(reports, kind, raw.get("doc_layout"))


def _skipped(name: str, forward_errors: list[dict]) -> FunctionReport:
    """A backward whose forward failed on every case: nothing to run it on."""
    report = FunctionReport(name, "skipped")
    e = forward_errors[0]
    why = ("returns None as its cache (still to write?)" if "None as its cache" in e["message"]
           else "is not implemented yet" if unfinished_error(e)
           else f"raised {e['type']}: {e['message']} (when {e['when']})")
    report.note(f"needs a working {FORWARD_OF[name]} to build the cache: it {why}")
    return report


def _add_gradients(outputs: dict[str, Output], rec: dict, case, kind: str, layout: str):
    """dx, dgamma and dbeta of one case; returns the references and scales of each."""
    x, dout = case.xs[0], case.dout
    t1, t2, t3 = M.dx_terms(x, dout, case.gamma, kind, case.G)
    scales = {"dx": float(np.abs(t1).max()), "dgamma": float(np.abs(dout).max()),
              "dbeta": float(np.abs(dout).max())}
    outputs["dx"].add(rec["dx"], t1 + t2 + t3, M.backward_mutants(x, dout, case, kind), given=dout,
                      scale=scales["dx"])
    gshape = shaped(case.gamma, layout).shape
    ref_dg, ref_db, xhat = M.param_grads(x, dout, kind, case.G, gshape)
    dg_mut, db_mut = M.param_sum_mutants(dout, xhat, x, gshape, kind)
    if kind == "spatial":
        _, dg_mut["reshape-without-transpose"], db_mut["reshape-without-transpose"] = M.unshuffled_grads(
            x, dout, case.gamma)
    outputs["dgamma"].add(rec["dgamma"], ref_dg, dg_mut, scale=scales["dgamma"])
    outputs["dbeta"].add(rec["dbeta"], ref_db, db_mut, scale=scales["dbeta"])
    return {"dx": t1 + t2 + t3, "dgamma": ref_dg, "dbeta": ref_db}, scales


def _backward_layout(name, kind, recs, layout, strict) -> FunctionReport:
    forward_errors = [r["forward_error"] for r in recs if "forward_error" in r]
    if len(forward_errors) == len(recs):
        return _skipped(name, forward_errors)
    report = FunctionReport(name, "ok")
    outputs = {k: Output(k) for k in ("dx", "dgamma", "dbeta")}
    all_cases, modified, numeric, forward_gap, on_cache = cases(kind), set(), [], 0.0, -1.0
    for case, rec in zip(all_cases, recs):
        if "forward_error" in rec or "error" in rec:
            continue
        modified |= set(rec["modified"])
        x, dout = case.xs[0], case.dout
        forward_gap = max(forward_gap, scale_err(as_array(rec.get("out")), M.forward_out(x, case, kind)))
        refs, scales = _add_gradients(outputs, rec, case, kind, layout)
        course = M.course_dx_on_cache(as_array(rec.get("out")), x, dout, case, kind)
        if course is not None:  # cases where gamma is too close to 0 to read xhat off out are left out
            on_cache = max(on_cache, scale_err(as_array(rec["dx"]), course, scales["dx"]))
        if rec.get("numeric"):
            numeric.append({k: (as_array(rec[k]), as_array(rec["numeric"][k]), refs[k], scales[k]) for k in refs})
    verdicts = {k: o.judge(report, strict) for k, o in outputs.items() if o.ref}
    wrong = [k for k, v in verdicts.items() if v == "wrong"]
    if wrong and numeric:
        if own_forward_explains(report, numeric, wrong, forward_gap, FORWARD_OF[name], on_cache):
            return conclude(report, {k: "right" for k in verdicts}, errors_of(recs), modified, strict, "dx")
    if verdicts.get("dx") == "wrong" and not outputs["dx"].matched:
        for note in paths_notes(outputs["dx"].user, all_cases, kind):
            report.note(note)
    return conclude(report, verdicts, errors_of(recs), modified, strict, "dx")


# ----------------------------------------------------------------------------- entry


def analyze(name: str, result: dict, strict: bool = False) -> FunctionReport:
    """A FunctionReport from the probe's result for ``name``."""
    # some mutants divide by N-1 = 0 or by sqrt(0) on the D=1 cases: NaN there, they just never match
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if "missing_forward" in result:
            return FunctionReport(name, "skipped",
                                  notes=[f"needs {result['missing_forward']} to build the cache; define it too"])
        if name in FORWARD_OF:
            return analyze_backward(name, result["raw"], strict)
        return analyze_forward(name, result["raw"], strict)
