"""Which of the two is wrong, the backward or the forward: a wrong backward is judged
against the gradient of the user's own forward first (numeric, on the gradient's scale);
exact for a wrong forward, it is right (fix the forward). A wrong dx that matches no
known mistake is projected onto the three terms of the closed form,

    dx = ivar * dxhat  -  ivar * mean(dxhat)  -  ivar * xhat * mean(dxhat * xhat)
         (direct path)    (through the mean)     (through the variance)

to say which path it weights wrongly.
"""

from __future__ import annotations

import numpy as np

from .catalog import FunctionReport
from .judge import OK_TOL, scale_err
from .mutants import dx_terms

OWN_TOL = 1e-6  # a backward "is the gradient of" its forward within this (numeric differences ~1e-9)


def _offs(own: dict) -> str:
    """'dx off by 2.7e-01 of the gradient's scale, dgamma of another shape'."""
    parts = [f"{k} off by {v:.1e}" if np.isfinite(v) else f"{k} of another shape or not finite" for k, v in own.items()]
    return ", ".join(parts) + (" of the gradient's scale" if any(np.isfinite(v) for v in own.values()) else "")


def own_forward_explains(report: FunctionReport, numeric: list, wrong: list, forward_gap: float, forward: str,
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


def paths_notes(user_dx: list, cases: list, kind: str) -> list[str]:
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
