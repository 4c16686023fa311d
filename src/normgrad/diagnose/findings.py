"""What the designed probes (``designed``) say about a forward that is wrong and matches
no known mistake: which axes its statistics reduce over, whether it centres, which
channels share a group, where eps enters, where gamma and beta land. One sentence per
finding, each with an id; nothing is said where a probe could not be read.
"""

from __future__ import annotations

import numpy as np

from .catalog import FunctionReport
from .designed import AFFINE_BETA, AFFINE_GAMMA, PROBE_CASE, tiny_input
from .inputs import EPS, Case, cases, view
from .judge import as_array, scale_err
from .mutants import normalize

PROBE_ZERO = 1e-6  # a designed probe's output counts as zero below this
EXPECTED_AXES = {"batch": (0,), "layer": (1,), "spatial": (0, 2, 3), "group": (1, 2, 3)}


def _sets(groups) -> str:
    return ", ".join("{" + ", ".join(map(str, g)) + "}" for g in groups)


def _read(rec, shape):
    """A probe's output in x's shape; None when it is missing, of another size or not finite."""
    a = as_array(rec)
    return a.reshape(shape) if a is not None and a.size == int(np.prod(shape)) and np.isfinite(a).all() else None


def _wrong_axes(report: FunctionReport, kind: str, rec: dict, shape) -> bool:
    """The axes whose one-axis input gives a non-zero output are those reduced over."""
    outs = [_read(r, shape) for r in rec.get("axis", [])]
    if not outs or any(o is None for o in outs):
        return False
    reduced = tuple(a for a, o in enumerate(outs) if np.abs(o).max() > PROBE_ZERO)
    if reduced == EXPECTED_AXES[kind]:
        return False
    every = " (every axis: a reduction without axis=)" if len(reduced) == len(shape) else ""
    report.diagnose("wrong-axis", f"your statistics reduce over axes {reduced}{every}; they should "
                                  f"reduce over {EXPECTED_AXES[kind]} (an x that varies along one axis "
                                  "only gives a non-zero output only when that axis is reduced)")
    return True


def _wrong_groups(report: FunctionReport, rec: dict, case: Case) -> bool:
    """Group norm: the channels a one-channel input reaches are the channels of its group."""
    if not rec.get("channel"):
        return False
    chans = [_read(r, case.shape) for r in rec["channel"]]
    if not all(o is not None for o in chans):
        return False
    found = []
    for o in chans:
        g = tuple(int(c) for c in np.flatnonzero(np.abs(o).max(axis=(0, 2, 3)) > PROBE_ZERO))
        if g not in found:
            found.append(g)
    C, G = case.gamma.size, case.G
    want = [tuple(range(i, i + C // G)) for i in range(0, C, C // G)]
    if found == want:
        return False
    size_g = [tuple(range(i, i + G)) for i in range(0, C, G)]
    id_ = "groups-of-size-G" if found == size_g else "wrong-axis"
    report.diagnose(id_, f"with C = {C} and G = {G} your groups are channels {_sets(found)}; "
                         f"they should be {G} groups of C // G = {C // G}: {_sets(want)}")
    return True


def _eps(report: FunctionReport, kind: str, case: Case, tiny: np.ndarray) -> None:
    """Where eps enters, or which eps is used, from an x whose variance is eps."""
    x = tiny_input(case, kind)
    xv, axes = view(x, kind, case.G)
    refs = {"": normalize(x, xv, axes), "eps-outside-sqrt": normalize(x, xv, axes, eps_outside=True),
            "eps-missing": normalize(x, xv, axes, eps=0.0)}
    errs = {k: scale_err(tiny, r) for k, r in refs.items()}
    best = min(errs, key=errs.get)
    sd = float(np.std(tiny))
    said = f"for an x whose variance is eps your output's std is {sd:.3g}; with np.sqrt(var + eps) it is " \
           f"{float(np.std(refs[''])):.3g}"
    if best and errs[best] < 1e-3 and errs[""] > 1e-2:
        report.diagnose(best, said)
    elif errs[""] > 1e-2 and 0 < sd < 1:  # std = sqrt(var / (var + eps_used)) with var = EPS
        used = EPS * (1 / sd**2 - 1)
        report.diagnose("eps-value", f"{said}: it normalizes with eps = {used:.2g}, not the {EPS:g} the "
                                     "param dict passes")


def _affine(report: FunctionReport, kind: str, case: Case, ox, og, ob) -> None:
    """Which gamma and beta each element gets, from distinct gamma and beta values."""
    shape, C = case.shape, case.gamma.size
    axis = len(shape) - 1 if kind in ("batch", "layer") else 1
    channel = np.indices(shape)[axis]
    for what, values, got in (("gamma", AFFINE_GAMMA(C), None), ("beta", AFFINE_BETA(C), ob - ox)):
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


def probe_findings(report: FunctionReport, kind: str, rec: dict) -> None:
    """Explain a wrong forward from the designed probes (``designed.run_designed``)."""
    if not rec or "error" in rec:
        return
    case = cases(kind)[PROBE_CASE]
    right_axes = True
    const = _read(rec.get("const"), case.shape)
    if const is not None and np.abs(const).max() > 1e-3:
        report.diagnose("not-centred", "a constant x gives a non-zero output, so the mean is never subtracted")
        right_axes = False
    elif const is not None:
        wrong_axes = _wrong_axes(report, kind, rec, case.shape)
        wrong_groups = kind == "group" and _wrong_groups(report, rec, case)
        right_axes = not (wrong_axes or wrong_groups)
    tiny = _read(rec.get("tiny"), case.shape)
    if right_axes and tiny is not None:
        _eps(report, kind, case, tiny)
    ox, og, ob = (_read(rec.get(k), case.shape) for k in ("affine_x", "affine_gamma", "affine_beta"))
    if ox is None or og is None or ob is None:
        return
    _affine(report, kind, case, ox, og, ob)
