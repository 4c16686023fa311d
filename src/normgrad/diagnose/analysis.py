"""Compare recorded outputs with the reference and with known mistakes; say what is wrong.

For each output (out, running statistics, test-mode out, dx, dgamma, dbeta) the
reference and the mutants come from ``mutants`` (float64, the probe's cases). An
output is judged on its own scale: the largest difference over the larger of the
reference's largest value and the output's natural scale (for dx the direct path
ivar * dxhat, for dgamma / dbeta dout), so rounding noise on a true gradient that is
zero (N = 2, D = 1) is never a failure; the notebook's ``rel_error`` is reported
beside it. An output is *right*, *right in a shape that differs only by size-1 axes*
(accepted, with a note; wrong under ``strict``), *missing* (not returned, or a
stub: constant, zeros, its input unchanged) or *wrong*; a wrong output is matched
against the mutants (mistakes alone and combined), and the simplest combination that
matches on every case names the mistakes. A wrong forward with no match is explained
by the designed probes (which axes its statistics reduce over, centring, where eps
enters, where gamma and beta land). A backward is judged against the gradient of the
user's own forward first: exact for a wrong forward, it is right (fix the forward).
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

OK_TOL = 1e-7  # on the output's own scale: round-off is ~1e-15, eps in the wrong place ~1e-6 or more
MATCH_TOL = 1e-8  # a mutant "matches" within this (or explains all but 1e-3 of the error)
OWN_TOL = 1e-6  # a backward "is the gradient of" its forward within this (numeric differences ~1e-9)
PROBE_ZERO = 1e-6  # a designed probe's output counts as zero below this
EXPECTED_AXES = {"batch": (0,), "layer": (1,), "spatial": (0, 2, 3), "group": (1, 2, 3)}
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


def _unfinished_error(e: dict) -> bool:
    """An exception a function that is not written yet raises: NotImplementedError, ``assert
    False``, a TODO."""
    if e.get("type") in UNFINISHED_ERRORS:
        return True
    text = f"{e.get('message') or ''} {e.get('code') or ''}"
    return e.get("type") == "AssertionError" and (
        (e.get("code") or "").replace(" ", "").startswith("assertFalse") or "TODO" in text
        or "implement" in text.lower())


PY2_NAMES = {"xrange": "range", "raw_input": "input", "unicode": "str", "basestring": "str", "unichr": "chr",
             "iteritems": "items", "has_key": "in", "izip": "zip"}


def _stub(u: np.ndarray, given) -> bool:
    """An output a function that is not written yet returns: constant (zeros), or its input."""
    if u is None or u.size <= 1 or np.ptp(u) == 0:
        return True
    return given is not None and u.shape == given.shape and np.array_equal(u, given)


class _Output:
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
        self.user.append(_array(user_rec))
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
            detail = f"{self.key}: {variant.strip()}" if " " in variant else f"{self.key} matches this mistake on every case"
            report.diagnose(id_, detail)
        return True


def _conclude(report: FunctionReport, verdicts: dict[str, str], case_errors: list[dict], modified: set,
              strict: bool, primary: str) -> FunctionReport:
    """The status once every output and every case is judged. A function whose ``primary``
    output (out, dx) is not written yet is unfinished, whatever its other outputs are."""
    if modified:
        report.diagnose("inputs-modified", f"modified: {', '.join(sorted(modified))}")
    raised = [e for e in case_errors if not _unfinished_error(e)]
    stops = [e for e in case_errors if _unfinished_error(e) and e.get("code")]
    missing = [k for k, v in verdicts.items() if v == "missing"]
    wrong = [k for k, v in verdicts.items() if v == "wrong"]
    if raised:
        report.exception = raised[0]
        report.status = "error"
        if raised[0].get("type") == "NameError":
            name = (raised[0].get("message") or "").split("'")[1:2]
            if name and name[0] in PY2_NAMES:
                report.note(f"{name[0]} is Python 2: in Python 3 use {PY2_NAMES[name[0]]}")
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
        if stops:
            what += f" (it stops at `{stops[0]['code']}`" + (f", line {stops[0]['line']})" if stops[0].get("line")
                                                             else ")")
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
    reports = {layout: _forward_layout(name, kind, recs, strict, raw.get("probes", {}).get(layout))
               for layout, recs in raw["layouts"].items()}
    report = _pick_layout(reports, kind, raw.get("doc_layout"))
    if kind in probe.RUNNING and report.status == "ok":
        _judge_init(report, raw.get("init", {}), kind, strict)
    return report


def _forward_layout(name, kind, recs, strict, probes=None) -> FunctionReport:
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
        usable = (um is not None and uv is not None and um.size in (1, C) and uv.size in (1, C)
                  and np.isfinite(uv).all() and (uv >= 0).all())
        use_m, use_v = ((np.broadcast_to(um.ravel(), C).copy(), np.broadcast_to(uv.ravel(), C).copy()) if usable
                        else (ref_m, ref_v))
        xt = case.xs[-1]
        outputs["test out"].add(rec["test_out"], M.test_out(xt, case, kind, use_m, use_v),
                                M.test_mutants(xt, case, kind, use_m, use_v), given=xt)
    verdicts = {k: o.judge(report, strict) for k, o in outputs.items() if o.ref}
    if verdicts.get("out") == "wrong" and not outputs["out"].matched and probes:
        _probe_findings(report, kind, probes)
    for d in report.diagnoses:  # a slip found in test mode only says so
        if d.detail.startswith("test out") and d.id in ("eps-outside-sqrt", "eps-missing"):
            d.detail += " (in test mode)"
    return _conclude(report, verdicts, _group_errors(recs), modified, strict, "out")


def _pick_layout(reports: dict[str, FunctionReport], kind: str, doc_layout: str | None = None) -> FunctionReport:
    """The report of the gamma layout the function's docstring states; else the one that works:
    right first, then one that ran."""
    if doc_layout in reports and len(reports) > 1:
        report = reports[doc_layout]
        report.note(f"gamma and beta were passed with shape {doc_layout}, as your docstring states")
        other, other_report = next((k, r) for k, r in reports.items() if k != doc_layout)
        if not report.ok and other_report.ok:
            report.note(f"with gamma and beta of shape {other} it is right: make it work with the shape your "
                        "docstring states, which the notebook passes")
        return report
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


def _sets(groups) -> str:
    return ", ".join("{" + ", ".join(map(str, g)) + "}" for g in groups)


def _probe_findings(report: FunctionReport, kind: str, rec: dict) -> None:
    """Explain a wrong forward from the designed probes (``probe._designed``): one sentence
    per finding, each with an id. Nothing is said where a probe could not be read."""
    if not rec or "error" in rec:
        return
    case = probe.cases(kind)[probe.PROBE_CASE]
    shape, C = case.shape, case.gamma.size

    def arr(r):
        a = _array(r)
        return a.reshape(shape) if a is not None and a.size == int(np.prod(shape)) and np.isfinite(a).all() else None

    right_axes = True
    const = arr(rec.get("const"))
    if const is not None and np.abs(const).max() > 1e-3:
        report.diagnose("not-centred", "a constant x gives a non-zero output, so the mean is never subtracted")
        right_axes = False
    elif const is not None:
        outs = [arr(r) for r in rec.get("axis", [])]
        if outs and all(o is not None for o in outs):
            reduced = tuple(a for a, o in enumerate(outs) if np.abs(o).max() > PROBE_ZERO)
            if reduced != EXPECTED_AXES[kind]:
                right_axes = False
                every = " (every axis: a reduction without axis=)" if len(reduced) == len(shape) else ""
                report.diagnose("wrong-axis", f"your statistics reduce over axes {reduced}{every}; they should "
                                              f"reduce over {EXPECTED_AXES[kind]} (an x that varies along one axis "
                                              "only gives a non-zero output only when that axis is reduced)")
        if kind == "group" and rec.get("channel"):
            chans = [arr(r) for r in rec["channel"]]
            if all(o is not None for o in chans):
                found = []
                for o in chans:
                    g = tuple(int(c) for c in np.flatnonzero(np.abs(o).max(axis=(0, 2, 3)) > PROBE_ZERO))
                    if g not in found:
                        found.append(g)
                G = case.G
                want = [tuple(range(i, i + C // G)) for i in range(0, C, C // G)]
                if found != want:
                    right_axes = False
                    size_g = [tuple(range(i, i + G)) for i in range(0, C, G)]
                    id_ = "groups-of-size-G" if found == size_g else "wrong-axis"
                    report.diagnose(id_, f"with C = {C} and G = {G} your groups are channels {_sets(found)}; "
                                         f"they should be {G} groups of C // G = {C // G}: {_sets(want)}")
    tiny = arr(rec.get("tiny"))
    if right_axes and tiny is not None:
        x = probe.tiny_input(case, kind)
        xv, axes = M.view(x, kind, case.G)
        refs = {"": M.normalize(x, xv, axes), "eps-outside-sqrt": M.normalize(x, xv, axes, eps_outside=True),
                "eps-missing": M.normalize(x, xv, axes, eps=0.0)}
        errs = {k: scale_err(tiny, r) for k, r in refs.items()}
        best = min(errs, key=errs.get)
        sd = float(np.std(tiny))
        said = f"for an x whose variance is eps your output's std is {sd:.3g}; with np.sqrt(var + eps) it is " \
               f"{float(np.std(refs[''])):.3g}"
        if best and errs[best] < 1e-3 and errs[""] > 1e-2:
            report.diagnose(best, said)
        elif errs[""] > 1e-2 and 0 < sd < 1:  # std = sqrt(var / (var + eps_used)) with var = EPS
            used = probe.EPS * (1 / sd**2 - 1)
            report.diagnose("eps-value", f"{said}: it normalizes with eps = {used:.2g}, not the {probe.EPS:g} the "
                                         "param dict passes")
    ox, og, ob = arr(rec.get("affine_x")), arr(rec.get("affine_gamma")), arr(rec.get("affine_beta"))
    if ox is None or og is None or ob is None:
        return
    axis = len(shape) - 1 if kind in ("batch", "layer") else 1
    channel = np.indices(shape)[axis]
    for what, values, got in (("gamma", probe.AFFINE_GAMMA(C), None), ("beta", probe.AFFINE_BETA(C), ob - ox)):
        if what == "gamma":
            ok = np.abs(ox) > 0.1
            got = np.where(ok, og / np.where(ok, ox, 1.0), np.nan)
        want = values[channel]
        bad = np.isfinite(got) & (np.abs(got - want) > 1e-6 * np.abs(want).max())
        if not bad.any():
            continue
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        k = np.flatnonzero(np.abs(values - got[idx]) < 1e-6 * np.abs(values).max())
        if k.size:
            report.diagnose("gamma-beta-mapping", f"element {list(idx)} is in channel {channel[idx]} but gets "
                                                  f"{what}[{int(k[0])}] (probed with distinct {what} values)")


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
    return _pick_layout(reports, kind, raw.get("doc_layout"))


def _param_sum_mutants(dout, xhat, x, gshape, kind) -> tuple[dict, dict]:
    """dgamma / dbeta summed over other axes than the right ones (and the usual slips)."""
    from itertools import combinations

    axes = M.param_axes(kind)
    dg = {"dgamma-not-summed": dout * xhat, "dgamma-uses-x": (dout * x).sum(axis=axes).reshape(gshape)}
    db = {"dbeta-not-summed": dout}
    size = int(np.prod(gshape))
    for r in range(1, dout.ndim + 1):
        for sub in combinations(range(dout.ndim), r):
            if sub == tuple(axes):
                continue
            g, b = (dout * xhat).sum(axis=sub), dout.sum(axis=sub)
            if g.size == size or sub == tuple(range(dout.ndim)):
                label = f"wrong-axis:summed over axes {sub}, not {tuple(axes)}"
                dg[label], db[label] = g, b
    return dg, db


def _backward_layout(name, kind, recs, layout, strict) -> FunctionReport:
    report = FunctionReport(name, "ok")
    forward_errors = [r["forward_error"] for r in recs if "forward_error" in r]
    if len(forward_errors) == len(recs):
        report.status = "skipped"
        e = forward_errors[0]
        why = ("returns None as its cache (still to write?)" if "None as its cache" in e["message"]
               else "is not implemented yet" if _unfinished_error(e)
               else f"raised {e['type']}: {e['message']} (when {e['when']})")
        report.note(f"needs a working {probe.FORWARD_OF[name]} to build the cache: it {why}")
        return report
    outputs = {k: _Output(k) for k in ("dx", "dgamma", "dbeta")}
    cases, modified, numeric, forward_gap, on_cache = probe.cases(kind), set(), [], 0.0, -1.0
    for case, rec in zip(cases, recs):
        if "forward_error" in rec or "error" in rec:
            continue
        modified |= set(rec["modified"])
        x, dout = case.xs[0], case.dout
        forward_gap = max(forward_gap, scale_err(_array(rec.get("out")), M.forward_out(x, case, kind)))
        t1, t2, t3 = M.dx_terms(x, dout, case.gamma, kind, case.G)
        course = M.course_dx_on_cache(_array(rec.get("out")), x, dout, case, kind)
        if course is not None:  # cases where gamma is too close to 0 to read xhat off out are left out
            on_cache = max(on_cache, scale_err(_array(rec["dx"]), course, float(np.abs(t1).max())))
        scales = {"dx": float(np.abs(t1).max()), "dgamma": float(np.abs(dout).max()),
                  "dbeta": float(np.abs(dout).max())}
        outputs["dx"].add(rec["dx"], t1 + t2 + t3, M.backward_mutants(x, dout, case, kind), given=dout,
                          scale=scales["dx"])
        gshape = probe.shaped(case.gamma, layout).shape
        ref_dg, ref_db, xhat = M.param_grads(x, dout, kind, case.G, gshape)
        dg_mut, db_mut = _param_sum_mutants(dout, xhat, x, gshape, kind)
        if kind == "spatial":
            _, dg_mut["reshape-without-transpose"], db_mut["reshape-without-transpose"] = M.unshuffled_grads(
                x, dout, case.gamma)
        outputs["dgamma"].add(rec["dgamma"], ref_dg, dg_mut, scale=scales["dgamma"])
        outputs["dbeta"].add(rec["dbeta"], ref_db, db_mut, scale=scales["dbeta"])
        if rec.get("numeric"):
            refs = {"dx": t1 + t2 + t3, "dgamma": ref_dg, "dbeta": ref_db}
            numeric.append({k: (_array(rec[k]), _array(rec["numeric"][k]), refs[k], scales[k]) for k in refs})
    verdicts = {k: o.judge(report, strict) for k, o in outputs.items() if o.ref}
    wrong = [k for k, v in verdicts.items() if v == "wrong"]
    if wrong and numeric:
        if _causality(report, numeric, wrong, forward_gap, probe.FORWARD_OF[name], on_cache):
            return _conclude(report, {k: "right" for k in verdicts}, _group_errors(recs), modified, strict, "dx")
    if verdicts.get("dx") == "wrong" and not outputs["dx"].matched:
        for note in _paths_note(outputs["dx"].user, cases, kind):
            report.note(note)
    return _conclude(report, verdicts, _group_errors(recs), modified, strict, "dx")


def _offs(own: dict) -> str:
    """'dx off by 2.7e-01 of the gradient's scale, dgamma of another shape'."""
    parts = [f"{k} off by {v:.1e}" if np.isfinite(v) else f"{k} of another shape or not finite" for k, v in own.items()]
    return ", ".join(parts) + (" of the gradient's scale" if any(np.isfinite(v) for v in own.values()) else "")


def _causality(report: FunctionReport, numeric: list, wrong: list, forward_gap: float, forward: str,
               on_cache: float = np.inf) -> bool:
    """Judge the wrong outputs against the gradient of the user's own forward (numeric, on
    the gradient's scale). True when the backward is right for that forward and the forward is
    what differs: the backward then is not counted wrong. Notes never contradict verdicts:
    the forward is blamed only when its own output differs from the reference."""

    def gap(k, which):
        if which == "own":  # the user's output against the gradient of the user's forward
            return max(scale_err(c[k][0], c[k][1], c[k][3]) if c[k][1] is not None else np.inf for c in numeric)
        return max(scale_err(c[k][1], c[k][2], c[k][3]) for c in numeric)

    own = {k: gap(k, "own") for k in wrong}
    how = "it is the gradient of your own forward"
    if "dx" in own and 0 <= on_cache < OK_TOL:  # the course's closed form on the forward's own xhat and ivar
        own["dx"] = min(own["dx"], on_cache)
        how = "it is exact for the cache your forward gives it"
    if forward_gap > OK_TOL:
        # the course's formulas on a cache of a slightly wrong forward (eps outside the sqrt) are
        # off from that forward's exact gradient by the size of the forward's own error: still right
        if all(own[k] < max(OWN_TOL, min(1e-3, 10 * forward_gap)) for k in wrong):
            report.diagnoses = [d for d in report.diagnoses if d.id == "inputs-modified"]
            report.note(f"your backward is right for your forward ({how}, to {max(own.values()):.0e} of the "
                        f"gradient's scale) — fix the forward: {forward}'s output differs from the reference by "
                        f"{forward_gap:.1e}")
            return True
        report.note(f"{forward}'s output differs from the reference by {forward_gap:.1e}, and your backward is not "
                    f"its gradient either ({_offs(own)}): fix the forward first, then the backward")
    else:
        report.note(f"your forward is right; your backward is not its gradient ({_offs(own)})")
    return False


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
    if residual > 1e-3:  # not a re-weighting of the paths: weights would mislead
        return ["dx: its error is not a re-weighting of the three paths (direct, through the mean, through the "
                "variance): check the axes of its sums, where gamma enters and the order of operations"]
    names = ("direct path (through xhat)", "path through the mean", "path through the variance")
    notes = [f"dx: the {name} is weighted {1 + c:.3g} instead of 1" for name, c in zip(names, coef) if abs(c) > 1e-3]
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
