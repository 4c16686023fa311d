"""Compare recorded outputs with the reference and with known mistakes; say what is wrong.

For each output (out, running statistics, test-mode out, dx, dgamma, dbeta) the
reference is computed here, in float64, from the same cases the probe ran. An
output that misses the reference is compared with "mutants": what the output
would be with one common mistake (N-1 in the variance, eps outside the sqrt, a
dropped path, a wrong axis, ...). A mutant that matches on every case names the
mistake. A wrong dx that matches none is projected onto the three terms of the
closed form,

    dx = ivar * dxhat  -  ivar * mean(dxhat)  -  ivar * xhat * mean(dxhat * xhat)
         (direct path)    (through the mean)     (through the variance)

to say which paths carry the error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..gradcheck import rel_error
from . import probe

OK_TOL = 1e-7  # a correct float64 implementation is at round-off
MATCH_TOL = 1e-6  # a mutant "matches" within this

CATALOG = {
    "unbiased-variance": ("the batch variance is divided by N-1 instead of N",
                          "use x.var(axis=...) (ddof=0): batch norm normalizes with the biased variance"),
    "running-var-unbiased": ("the running variance averages the unbiased (N-1) batch variance",
                             "CS231n's convention averages the same biased variance the forward pass uses"),
    "missing-mean-path": ("dx lacks the gradient that flows through the mean (mu depends on every x)",
                          "add dmu / N to dx, with dmu = -sum(dxhat * ivar) (+ dvar * mean(-2 * xmu))"),
    "missing-variance-path": ("dx lacks the gradient that flows through the variance",
                              "add dvar * 2 * xmu / N to dx, with dvar = sum(dxhat * xmu) * -0.5 * ivar**3"),
    "wrong-axis": ("a statistic or a sum is taken over the wrong axis",
                   "reduce over the batch axes the norm normalizes over (axis=0 for batch norm of (N, D))"),
    "eps-outside-sqrt": ("eps is added outside the square root",
                         "normalize by np.sqrt(var + eps), not np.sqrt(var) + eps"),
    "momentum-reversed": ("the running average weights the new batch by momentum",
                          "running = momentum * running + (1 - momentum) * batch_statistic"),
    "no-running-update": ("train mode does not update running_mean / running_var in bn_param",
                          "store the updated running statistics back into bn_param in train mode"),
    "test-uses-batch-stats": ("test mode normalizes with the batch's own statistics",
                              "in test mode use bn_param['running_mean'] and bn_param['running_var']"),
    "dgamma-not-summed": ("dgamma is not summed over the batch: it has x's shape",
                          "dgamma = np.sum(dout * xhat, axis=...) down to gamma's shape"),
    "dbeta-not-summed": ("dbeta is not summed over the batch: it has x's shape",
                         "dbeta = np.sum(dout, axis=...) down to beta's shape"),
    "dgamma-uses-x": ("dgamma multiplies dout by x instead of the normalized xhat",
                      "dgamma = np.sum(dout * xhat, axis=...)"),
    "inputs-modified": ("an input array was modified in place",
                        "work on new arrays (x = x - mu, not x -= mu); never write into x, gamma, beta or dout"),
    "wrong-shape": ("an output does not have the expected shape",
                    "out and dx have x's shape; dgamma and dbeta have gamma's shape"),
}


@dataclass
class Diagnosis:
    id: str
    explanation: str
    fix: str
    detail: str = ""


@dataclass
class FunctionReport:
    name: str
    status: str  # ok | wrong | error | timeout | crash | skipped
    errors: dict[str, float] = field(default_factory=dict)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    exception: dict | None = None
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def diagnose(self, id_: str, detail: str = "") -> None:
        if id_ not in {d.id for d in self.diagnoses}:
            explanation, fix = CATALOG[id_]
            self.diagnoses.append(Diagnosis(id_, explanation, fix, detail))

    def to_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "status": self.status,
                "errors": {k: (None if not np.isfinite(v) else v) for k, v in self.errors.items()},
                "diagnoses": [d.id for d in self.diagnoses],
                "details": [{"id": d.id, "explanation": d.explanation, "fix": d.fix, "detail": d.detail}
                            for d in self.diagnoses],
                "notes": self.notes, "exception": self.exception}


# ----------------------------------------------------------------------------- maths


def _view(x, kind, G):
    """x reshaped so the norm's statistics are over ``axes``; returns (view, axes)."""
    if kind == "batch":
        return x, (0,)
    if kind == "layer":
        return x, (1,)
    if kind == "spatial":
        return x, (0, 2, 3)
    N, C, H, W = x.shape
    return x.reshape(N, G, C // G, H, W), (2, 3, 4)


def _wrong_views(x, kind, G):
    """Views with the statistics over a wrong axis: the usual slips for each norm."""
    if kind == "batch":
        return [(x, (1,))]
    if kind == "layer":
        return [(x, (0,))]
    if kind == "spatial":
        return [(x, (2, 3)), (x, (0,)), (x, (0, 1, 2, 3))]
    N, C, H, W = x.shape
    return [(x, (2, 3)), (x.reshape(N, C // G, G, H, W), (1, 3, 4))]


def _gshape(kind, x):
    return (1, x.shape[1], 1, 1) if kind in ("spatial", "group") else (x.shape[1],)


def _param_axes(kind):
    return (0, 2, 3) if kind in ("spatial", "group") else (0,)


def normalize(x, view, axes, ddof=0, eps_outside=False):
    """xhat of x with statistics of ``view`` over ``axes`` (view shares x's memory order)."""
    mu = view.mean(axis=axes, keepdims=True)
    var = view.var(axis=axes, keepdims=True, ddof=ddof)
    denom = np.sqrt(var) + probe.EPS if eps_outside else np.sqrt(var + probe.EPS)
    return ((view - mu) / denom).reshape(x.shape), mu.squeeze(), var.squeeze()


def forward_out(case_x, case, kind, **kw):
    view, axes = kw.pop("view_axes", None) or _view(case_x, kind, case.G)
    xhat, _, _ = normalize(case_x, view, axes, **kw)
    g, b = case.gamma.reshape(_gshape(kind, case_x)), case.beta.reshape(_gshape(kind, case_x))
    return g * xhat + b


def batch_stats(x, kind):
    """Per-channel biased mean and variance (batch and spatial batch norm)."""
    axes = (0,) if kind == "batch" else (0, 2, 3)
    return x.mean(axis=axes), x.var(axis=axes)


def dx_terms(x, dout, gamma, kind, G, view_axes=None, ddof=0, eps_outside=False):
    """The closed form's three terms (direct, mean path, variance path), or the exact dx of a
    variant forward (ddof=1 or eps outside the sqrt), as arrays of x's shape."""
    view, axes = view_axes or _view(x, kind, G)
    g = gamma.reshape(_gshape(kind, x))
    dxhat = (dout * g).reshape(view.shape)
    M = np.prod([view.shape[a] for a in axes])
    mu = view.mean(axis=axes, keepdims=True)
    xmu = view - mu
    var = (xmu**2).sum(axis=axes, keepdims=True) / (M - ddof)
    if eps_outside:
        s = np.sqrt(var)
        d = s + probe.EPS
        full = (dxhat - dxhat.mean(axis=axes, keepdims=True)) / d - xmu * (dxhat * xmu).sum(
            axis=axes, keepdims=True) / ((M - ddof) * d**2 * np.where(s > 0, s, 1.0))
        return full.reshape(x.shape)
    ivar = 1.0 / np.sqrt(var + probe.EPS)
    if ddof:
        full = ivar * (dxhat - dxhat.mean(axis=axes, keepdims=True)) - ivar**3 * xmu * (dxhat * xmu).sum(
            axis=axes, keepdims=True) / (M - ddof)
        return full.reshape(x.shape)
    xhat = xmu * ivar
    t1 = ivar * dxhat
    t2 = -ivar * dxhat.mean(axis=axes, keepdims=True) * np.ones_like(xhat)
    t3 = -ivar * xhat * (dxhat * xhat).mean(axis=axes, keepdims=True)
    return tuple(t.reshape(x.shape) for t in (t1, t2, t3))


def param_grads(x, dout, kind, G, gamma_shape):
    xhat, _, _ = normalize(x, *_view(x, kind, G))
    axes = _param_axes(kind)
    return (dout * xhat).sum(axis=axes).reshape(gamma_shape), dout.sum(axis=axes).reshape(gamma_shape), xhat


# ----------------------------------------------------------------------------- comparison


def _array(rec):
    if rec is None or "not_array" in rec:
        return None
    return np.asarray(rec["data"], dtype=np.float64).reshape(rec["shape"])


def rel_err(a, b) -> float:
    """CS231n's relative error; inf when a is missing or has a different size."""
    if a is None or a.size != b.size:
        return float("inf")
    a = a.reshape(b.shape)
    if not np.isfinite(a).all():
        return float("inf")
    return rel_error(a, b)


class _Output:
    """One output of one function across cases: user arrays vs reference and mutants."""

    def __init__(self, report: FunctionReport, key: str):
        self.report, self.key = report, key
        self.user: list = []
        self.ref: list[np.ndarray] = []
        self.mutants: dict[str, list] = {}

    def add(self, user_rec, ref, mutants: dict[str, np.ndarray]):
        self.user.append(_array(user_rec))
        self.ref.append(ref)
        for name, m in mutants.items():
            self.mutants.setdefault(name, []).append(m)

    def finish(self) -> bool:
        """Record the error; diagnose; True when the output is right."""
        errors = [rel_err(u, r) for u, r in zip(self.user, self.ref)]
        self.report.errors[self.key] = max(errors) if errors else 0.0
        shapes_bad = [u is not None and u.shape != r.shape for u, r in zip(self.user, self.ref)]
        if any(shapes_bad):
            u, r = next((u, r) for u, r in zip(self.user, self.ref) if u is not None and u.shape != r.shape)
            self.report.diagnose("wrong-shape", f"{self.key} has shape {u.shape}, expected {r.shape}")
        if max(errors, default=0.0) < OK_TOL:
            return True
        for name, values in self.mutants.items():
            ids = name.split("+")
            if all(m is not None and u is not None and u.size == m.size and
                   rel_err(u, np.asarray(m)) < MATCH_TOL for u, m in zip(self.user, values)):
                for id_ in ids:
                    self.report.diagnose(id_.split(":")[0], f"{self.key} matches this mistake on every case")
        return False


def analyze_forward(name: str, raw: dict) -> FunctionReport:
    kind = probe.KIND[name]
    report = FunctionReport(name, "ok")
    out = _Output(report, "out")
    rmean, rvar, test = _Output(report, "running_mean"), _Output(report, "running_var"), _Output(report, "test out")
    modified = set()
    for case, rec in zip(probe.cases(kind), raw["cases"]):
        modified |= set(rec["modified"])
        for x, user in zip(case.xs[: probe.TRAIN_STEPS], rec["train_out"]):
            mutants = {"unbiased-variance": forward_out(x, case, kind, ddof=1),
                       "eps-outside-sqrt": forward_out(x, case, kind, eps_outside=True)}
            for i, va in enumerate(_wrong_views(x, kind, case.G)):
                mutants[f"wrong-axis:{i}"] = forward_out(x, case, kind, view_axes=va)
            out.add(user, forward_out(x, case, kind), mutants)
        if kind not in ("batch", "spatial"):
            continue
        C = case.shape[1]
        m = probe.MOMENTUM
        ref_m, ref_v, rev_m, rev_v, unb_v = (np.zeros(C) for _ in range(5))  # the CS231n starter starts at zeros
        for x in case.xs[: probe.TRAIN_STEPS]:
            mu, var = batch_stats(x, kind)
            count = x.size // C
            ref_m, ref_v = m * ref_m + (1 - m) * mu, m * ref_v + (1 - m) * var
            rev_m, rev_v = (1 - m) * rev_m + m * mu, (1 - m) * rev_v + m * var
            unb_v = m * unb_v + (1 - m) * var * count / (count - 1)
        no_update_m, no_update_v = np.zeros(C), np.zeros(C)
        rmean.add(rec["running_mean"], ref_m, {"momentum-reversed": rev_m, "no-running-update": no_update_m})
        rvar.add(rec["running_var"], ref_v, {"momentum-reversed": rev_v, "no-running-update": no_update_v,
                                            "running-var-unbiased": unb_v})
        if rec["running_mean"] is None or rec["running_var"] is None:
            report.diagnose("no-running-update", "bn_param has no running_mean / running_var after training")
        # test mode is judged against the user's own running statistics, so a wrong
        # running average is not blamed twice
        um, uv = _array(rec["running_mean"]), _array(rec["running_var"])
        usable = um is not None and uv is not None and um.size == C and uv.size == C and (uv >= 0).all()
        use_m, use_v = (um.reshape(C), uv.reshape(C)) if usable else (ref_m, ref_v)
        xt = case.xs[-1]
        shape = (1, C, 1, 1) if kind == "spatial" else (C,)
        expected = case.gamma.reshape(shape) * (xt - use_m.reshape(shape)) / np.sqrt(
            use_v.reshape(shape) + probe.EPS) + case.beta.reshape(shape)
        test.add(rec["test_out"], expected, {"test-uses-batch-stats": forward_out(xt, case, kind)})
    right = [o.finish() for o in (out,) + ((rmean, rvar, test) if kind in ("batch", "spatial") else ())]
    return _conclude(report, right, modified)


def _conclude(report: FunctionReport, right: list[bool], modified: set) -> FunctionReport:
    """Status and notes once every output is judged: wrong if any output is, or a
    mistake was found; an unexplained wrong output says so."""
    if modified:
        report.diagnose("inputs-modified", f"modified: {', '.join(sorted(modified))}")
    if not all(right) or report.diagnoses:
        report.status = "wrong"
        wrong = [k for k, e in report.errors.items() if not e < OK_TOL]
        if wrong and not report.diagnoses and not report.notes:
            report.notes.append(f"wrong outputs: {', '.join(wrong)} (no known mistake matches)")
    return report


def _paths_note(user_dx: list, cases: list, kind: str) -> list[str]:
    """Least-squares fit of (user dx - reference dx) on the closed form's three path terms."""
    rows, errs = [], []
    for u, case in zip(user_dx, cases):
        if u is None or u.size != case.dout.size:
            continue
        t = dx_terms(case.xs[0], case.dout, case.gamma, kind, case.G)
        ref = t[0] + t[1] + t[2]
        rows.append(np.stack([ti.ravel() for ti in t], axis=1))
        errs.append(u.ravel() - ref.ravel())
    if not rows:
        return ["dx could not be compared (wrong size or not an array)"]
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
    return notes or ["dx is wrong, but not along any path"]


def analyze_backward(name: str, raw: dict) -> FunctionReport:
    kind = probe.KIND[name]
    report = FunctionReport(name, "ok")
    dx, dgamma, dbeta = _Output(report, "dx"), _Output(report, "dgamma"), _Output(report, "dbeta")
    cases = probe.cases(kind)
    modified = set()
    for case, rec in zip(cases, raw["cases"]):
        modified |= set(rec["modified"])
        x, dout = case.xs[0], case.dout
        t1, t2, t3 = dx_terms(x, dout, case.gamma, kind, case.G)
        mutants = {"missing-mean-path": t1 + t3, "missing-variance-path": t1 + t2,
                   "missing-mean-path+missing-variance-path": t1,
                   "unbiased-variance": dx_terms(x, dout, case.gamma, kind, case.G, ddof=1),
                   "eps-outside-sqrt": dx_terms(x, dout, case.gamma, kind, case.G, eps_outside=True)}
        for i, va in enumerate(_wrong_views(x, kind, case.G)):  # the exact gradient of a wrong-axis forward
            mutants[f"wrong-axis:{i}"] = sum(dx_terms(x, dout, case.gamma, kind, case.G, view_axes=va))
        mutants.update(_wrong_sums(x, dout, case.gamma, kind, case.G))
        dx.add(rec["dx"], t1 + t2 + t3, mutants)
        ref_dg, ref_db, xhat = param_grads(x, dout, kind, case.G, case.gamma.shape)
        axes = _param_axes(kind)
        other = (1,) if kind in ("batch", "layer") else (1, 2, 3)
        dgamma.add(rec["dgamma"], ref_dg, {"dgamma-not-summed": dout * xhat,
                                           "dgamma-uses-x": (dout * x).sum(axis=axes).reshape(case.gamma.shape),
                                           "wrong-axis": (dout * xhat).sum(axis=other)})
        dbeta.add(rec["dbeta"], ref_db, {"dbeta-not-summed": dout, "wrong-axis": dout.sum(axis=other)})
    right = [o.finish() for o in (dx, dgamma, dbeta)]
    if not right[0] and not any(d.id.startswith(("missing-", "unbiased", "eps-", "wrong-axis"))
                                for d in report.diagnoses):
        report.notes += _paths_note(dx.user, cases, kind)
    return _conclude(report, right, modified)


def _wrong_sums(x, dout, gamma, kind, G) -> dict[str, np.ndarray]:
    """dx with the right statistics (from the cache) but the backward's sums taken over
    the wrong axis, or over everything; each divided by the right count, as written."""
    if kind not in ("batch", "layer"):
        return {}
    right, other = (0, 1) if kind == "batch" else (1, 0)
    n = x.shape[right]
    mu = x.mean(axis=right, keepdims=True)
    ivar = 1.0 / np.sqrt(x.var(axis=right, keepdims=True) + probe.EPS)
    xhat = (x - mu) * ivar
    dxhat = dout * gamma.reshape(_gshape(kind, x))
    out = {}
    for label, axis in (("other", other), ("all", None)):
        s1 = dxhat.sum(axis=axis, keepdims=axis is not None)
        s2 = (dxhat * xhat).sum(axis=axis, keepdims=axis is not None)
        out[f"wrong-axis:sums-{label}"] = ivar * (dxhat - s1 / n - xhat * s2 / n)
    return out


def analyze(name: str, result: dict) -> FunctionReport:
    """A FunctionReport from the probe's result for ``name``."""
    # some mutants divide by N-1 = 0 on the D=1 cases: they are NaN there and just never match
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _analyze(name, result)


def _analyze(name: str, result: dict) -> FunctionReport:
    if "error" in result:
        report = FunctionReport(name, "error", exception=result["error"])
        if result["error"].get("type") == "wrong-return":
            report.diagnose("wrong-shape", result["error"]["message"])
        return report
    if "missing_forward" in result:
        return FunctionReport(name, "skipped",
                              notes=[f"needs {result['missing_forward']} to build the cache; define it too"])
    if name in probe.FORWARD_OF:
        return analyze_backward(name, result["raw"])
    return analyze_forward(name, result["raw"])
