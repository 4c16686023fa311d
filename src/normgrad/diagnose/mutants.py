"""The reference outputs of every probed function, and "mutants": what each output
would be with one common mistake, computed exactly as the mistaken code would.

Everything here is float64 NumPy on the probe's cases; nothing runs user code.
A norm is computed on a *view* of x: x reshaped so that its statistics reduce over
``axes`` of the view, with gamma and beta applied per channel of x. A mistake that
reduces over the wrong axes is the same computation on another view.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from .inputs import EPS, MOMENTUM, RUNNING, TRAIN_STEPS, Case, view


def wrong_views(x, kind, G):
    """Views with the statistics over a wrong axis: the usual slips for each norm."""
    if kind == "batch":
        return [(x, (1,))]
    if kind == "layer":
        return [(x, (0,))]
    if kind == "spatial":
        return [(x, (2, 3)), (x, (0,)), (x, (0, 1, 2, 3))]
    N, C, H, W = x.shape
    return [(x, (2, 3)), (x.reshape(N, C // G, G, H, W), (1, 3, 4))]


def channel_shape(kind, x):
    return (1, x.shape[1], 1, 1) if kind in ("spatial", "group") else (x.shape[-1],)


def param_axes(kind):
    return (0, 2, 3) if kind in ("spatial", "group") else (0,)


def normalize(x, xv, axes, ddof=0, eps_outside=False, eps=EPS, centring=""):
    """xhat of x with statistics of the view ``xv`` over ``axes``; ``centring``:
    'not-centred' (the mean is never subtracted) or 'variance-not-centred' (var = mean(x**2))."""
    mu = xv.mean(axis=axes, keepdims=True)
    if centring == "variance-not-centred":
        M = np.prod([xv.shape[a] for a in axes])
        var = (xv**2).sum(axis=axes, keepdims=True) / (M - ddof)
    else:
        var = xv.var(axis=axes, keepdims=True, ddof=ddof)
    denom = np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps)
    return ((xv if centring == "not-centred" else xv - mu) / denom).reshape(x.shape)


def stat_views(x, kind, G):
    """(name, view) pairs: the right view (name ''), then the wrong ones: the usual slips,
    statistics over every axis (a reduction without axis=), group norm's groups of G channels."""
    right = view(x, kind, G)[1] if kind != "group" else "each group of C // G channels with axes (2, 3)"

    def name(i, va):  # a view of x itself reads as axes of x; a reshaped one by number
        if va[0] is x:
            every = " (every axis: a reduction without axis=)" if len(va[1]) == x.ndim else ""
            if kind == "group" and va[1] == (2, 3):
                every = " (per channel: instance norm)"
            return f"wrong-axis:statistics over axes {va[1]}{every}, not {right}"
        return f"wrong-axis:{i}"

    views = [("", view(x, kind, G))] + [(name(i, va), va) for i, va in enumerate(wrong_views(x, kind, G))]
    if not any(va[0] is x and len(va[1]) == x.ndim for va in wrong_views(x, kind, G)):
        views.append((name("all", (x, tuple(range(x.ndim)))), (x, tuple(range(x.ndim)))))
    if kind == "group":
        N, C, H, W = x.shape
        if C % G == 0 and G != C // G:
            views.append(("groups-of-size-G", (x.reshape(N, C // G, G, H, W), (2, 3, 4))))
    return views


def _join(*parts) -> str:
    return "+".join(p for p in parts if p)


def forward_out(x, case: Case, kind, view_axes=None, affine=True, **kw):
    """The forward's output, with statistics over ``view_axes`` (default: the right ones)."""
    xv, axes = view_axes or view(x, kind, case.G)
    xhat = normalize(x, xv, axes, **kw)
    if not affine:
        return xhat
    shape = channel_shape(kind, x)
    return case.gamma.reshape(shape) * xhat + case.beta.reshape(shape)


def unshuffled(x):
    """Spatial batch norm's classic slip: (N, C, H, W) reshaped straight to (N*H*W, C),
    without moving C last first. Returns the (M, C) view."""
    return x.reshape(-1, x.shape[1])


def unshuffled_out(x, case: Case, mean=None, var=None):
    """Forward of batch norm on ``unshuffled(x)`` (or with the given per-column statistics), reshaped back."""
    v = unshuffled(x)
    mean = v.mean(axis=0) if mean is None else mean
    var = v.var(axis=0) if var is None else var
    return (case.gamma * (v - mean) / np.sqrt(var + EPS) + case.beta).reshape(x.shape)


def batch_stats(x, kind):
    """Per-channel mean and biased variance (batch and spatial batch norm)."""
    axes = (0,) if kind == "batch" else (0, 2, 3)
    return x.mean(axis=axes), x.var(axis=axes)


def running_stats(case: Case, kind, stats=None, weight_new=1 - MOMENTUM, unbiased=False, use_std=False):
    """The running (mean, var) after the probe's training steps from the case's starting values.

    - stats(x): per-channel (mean, var) of a batch (default: the right ones)
    - weight_new: weight of the batch in each update (momentum reversed: MOMENTUM)
    - unbiased: average var * n / (n - 1); use_std: average the standard deviation
    """
    stats = stats or (lambda x: batch_stats(x, kind))
    m, v = case.running_mean.copy(), case.running_var.copy()
    for x in case.xs[:TRAIN_STEPS]:
        mu, var = stats(x)
        n = x.size // mu.size
        var = var * n / (n - 1) if unbiased else np.sqrt(var) if use_std else var
        m, v = (1 - weight_new) * m + weight_new * mu, (1 - weight_new) * v + weight_new * var
    return m, v


def test_out(x, case: Case, kind, mean, var, how: str = "right", affine: str = ""):
    """Test-mode output with running statistics (mean, var), right or with a slip in the
    denominator (``how``) and / or in the affine step (``affine``)."""
    shape = channel_shape(kind, x)
    g, b = case.gamma.reshape(shape), case.beta.reshape(shape)
    m, v = mean.reshape(shape), var.reshape(shape)
    denom = {"eps-outside-sqrt": lambda: np.sqrt(v) + EPS, "eps-missing": lambda: np.sqrt(v),
             "test-divides-by-var": lambda: v + EPS}.get(how, lambda: np.sqrt(v + EPS))()
    xhat = (x - m) / denom
    if how == "test-drops-affine" or affine == "test-drops-affine":
        return xhat
    return g * xhat - b if affine == "test-beta-sign" else g * xhat + b


def dx_terms(x, dout, gamma, kind, G, view_axes=None, ddof=0, eps_outside=False):
    """The closed form's three terms (direct, mean path, variance path), or the exact dx of a
    variant forward (ddof=1 or eps outside the sqrt), as arrays of x's shape."""
    xv, axes = view_axes or view(x, kind, G)
    g = gamma.reshape(channel_shape(kind, x))
    dxhat = (dout * g).reshape(xv.shape)
    M = np.prod([xv.shape[a] for a in axes])
    mu = xv.mean(axis=axes, keepdims=True)
    xmu = xv - mu
    var = (xmu**2).sum(axis=axes, keepdims=True) / (M - ddof)
    if eps_outside:
        s = np.sqrt(var)
        d = s + EPS
        full = (dxhat - dxhat.mean(axis=axes, keepdims=True)) / d - xmu * (dxhat * xmu).sum(
            axis=axes, keepdims=True) / ((M - ddof) * d**2 * np.where(s > 0, s, 1.0))
        return full.reshape(x.shape)
    ivar = 1.0 / np.sqrt(var + EPS)
    if ddof:
        full = ivar * (dxhat - dxhat.mean(axis=axes, keepdims=True)) - ivar**3 * xmu * (dxhat * xmu).sum(
            axis=axes, keepdims=True) / (M - ddof)
        return full.reshape(x.shape)
    xhat = xmu * ivar
    t1 = ivar * dxhat
    t2 = -ivar * dxhat.mean(axis=axes, keepdims=True) * np.ones_like(xhat)
    t3 = -ivar * xhat * (dxhat * xhat).mean(axis=axes, keepdims=True)
    return tuple(t.reshape(x.shape) for t in (t1, t2, t3))


def course_dx_on_cache(out, x, dout, case: Case, kind):
    """The course's closed-form dx, ivar * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
    evaluated on what the user's forward cached: its xhat = (out - beta) / gamma and its ivar
    (the slope of xhat against x - mu). None when that cannot be read off ``out``."""
    g = case.gamma.reshape(channel_shape(kind, x))
    if out is None or out.size != x.size or np.abs(case.gamma).min() < 0.1:
        return None
    xhat = (out.reshape(x.shape) - case.beta.reshape(g.shape)) / g
    xv, axes = view(x, kind, case.G)
    hv = xhat.reshape(xv.shape)
    xmu = xv - xv.mean(axis=axes, keepdims=True)
    ss = (xmu**2).sum(axis=axes, keepdims=True)
    ivar = (hv * xmu).sum(axis=axes, keepdims=True) / np.where(ss > 0, ss, 1.0)
    dxhat = (dout * g).reshape(xv.shape)
    dx = ivar * (dxhat - dxhat.mean(axis=axes, keepdims=True) - hv * (dxhat * hv).mean(axis=axes, keepdims=True))
    return dx.reshape(x.shape)


def unshuffled_grads(x, dout, gamma):
    """(dx, dgamma, dbeta) of ``unshuffled_out``: the backward that matches that forward."""
    v, d = unshuffled(x), unshuffled(dout)
    ivar = 1.0 / np.sqrt(v.var(axis=0) + EPS)
    xhat = (v - v.mean(axis=0)) * ivar
    dxhat = d * gamma
    dx = ivar * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0))
    return dx.reshape(x.shape), (d * xhat).sum(axis=0), d.sum(axis=0)


def param_grads(x, dout, kind, G, gamma_shape):
    xhat = normalize(x, *view(x, kind, G))
    axes = param_axes(kind)
    return (dout * xhat).sum(axis=axes).reshape(gamma_shape), dout.sum(axis=axes).reshape(gamma_shape), xhat


def param_sum_mutants(dout, xhat, x, gshape, kind) -> tuple[dict, dict]:
    """dgamma / dbeta summed over other axes than the right ones (and the usual slips)."""
    axes = param_axes(kind)
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


def wrong_sums(x, dout, gamma, kind):
    """dx of a closed-form backward with the right statistics (from the cache) and slips in how
    it is written, alone and combined: gamma left out or factored out of the sums, the sums
    over the wrong axis or over everything (divided by either count), the mean path or the
    variance path left out, or x where x - mu belongs in the variance path."""
    if kind not in ("batch", "layer"):
        return {}
    right, other = (0, 1) if kind == "batch" else (1, 0)
    mu = x.mean(axis=right, keepdims=True)
    ivar = 1.0 / np.sqrt(x.var(axis=right, keepdims=True) + EPS)
    xhat = (x - mu) * ivar
    g = gamma.reshape(channel_shape(kind, x))
    out = {}
    wrong = f"wrong-axis:the backward's sums are over axis {other}, not {right}"
    sums = (("", right, x.shape[right]), (wrong, other, x.shape[right]), (wrong + " ", other, x.shape[other]),
            (f"wrong-axis:the backward's sums are over every axis, not axis {right}", None, x.shape[right]))
    for gname in ("", "gamma-outside-sums", "missing-gamma-in-dx"):
        dxhat = dout * g if gname == "" else dout
        for aname, axis, n in sums:
            def total(a, axis=axis):
                return a.sum(axis=axis, keepdims=axis is not None)

            for mname, wm in (("", 1.0), ("missing-mean-path", 0.0)):
                for vname in ("", "missing-variance-path", "variance-path-uncentred"):
                    xv = x * ivar if vname == "variance-path-uncentred" else xhat
                    wv = 0.0 if vname == "missing-variance-path" else 1.0
                    dx = ivar * (dxhat - wm * total(dxhat) / n - wv * xv * total(dxhat * xv) / n)
                    name = _join(gname, aname, mname, vname)
                    if name:
                        out[name] = g * dx if gname == "gamma-outside-sums" else dx
    return out


def forward_mutants(x, case: Case, kind) -> dict[str, np.ndarray]:
    """Training-mode outputs of the forward mistakes, alone and combined, by ids joined with
    '+' (":k" tells variants apart): statistics axes x centring x where eps enters x the
    variance's divisor x gamma/beta applied or not."""
    mutants = {}
    for vname, va in stat_views(x, kind, case.G):
        for cname in ("", "not-centred", "variance-not-centred"):
            for ename, kw in (("", {}), ("eps-outside-sqrt", {"eps_outside": True}), ("eps-missing", {"eps": 0.0})):
                for dname, ddof in (("", 0), ("unbiased-variance", 1)):
                    for aname, affine in (("", True), ("drops-affine", False)):
                        name = _join(vname, cname, ename, dname, aname)
                        if name:
                            mutants[name] = forward_out(x, case, kind, view_axes=va, affine=affine, ddof=ddof,
                                                        centring=cname, **kw)
    if kind == "spatial":
        mutants["reshape-without-transpose"] = unshuffled_out(x, case)
    return mutants


def backward_mutants(x, dout, case: Case, kind) -> dict[str, np.ndarray]:
    """dx of the usual backward mistakes (or the exact gradient of a mistaken forward), by id."""
    gamma, G = case.gamma, case.G
    t1, t2, t3 = dx_terms(x, dout, gamma, kind, G)
    no_gamma = dx_terms(x, dout, np.ones_like(gamma), kind, G)
    mutants = {"missing-mean-path": t1 + t3, "missing-variance-path": t1 + t2,
               "missing-mean-path+missing-variance-path": t1,
               "missing-gamma-in-dx": sum(no_gamma),
               "unbiased-variance": dx_terms(x, dout, gamma, kind, G, ddof=1),
               "eps-outside-sqrt": dx_terms(x, dout, gamma, kind, G, eps_outside=True)}
    for i, va in enumerate(wrong_views(x, kind, G)):  # the exact gradient of a wrong-axis forward
        mutants[f"wrong-axis:{i}"] = sum(dx_terms(x, dout, gamma, kind, G, view_axes=va))
    mutants.update(wrong_sums(x, dout, gamma, kind))
    if kind == "spatial":
        mutants["reshape-without-transpose"] = unshuffled_grads(x, dout, gamma)[0]
    return mutants


def running_mutants(case: Case, kind) -> tuple[dict, dict]:
    """(running_mean mutants, running_var mutants) of the usual running-average mistakes."""
    start = (case.running_mean.copy(), case.running_var.copy())
    rev = running_stats(case, kind, weight_new=MOMENTUM)
    means = {"momentum-reversed": rev[0], "no-running-update": start[0]}
    varis = {"momentum-reversed": rev[1], "no-running-update": start[1],
             "running-var-unbiased": running_stats(case, kind, unbiased=True)[1],
             "std-of-variance": running_stats(case, kind, use_std=True)[1]}
    m, v = case.running_mean.mean(), case.running_var.mean()  # one number from the first step on
    for x in case.xs[:TRAIN_STEPS]:
        m, v = MOMENTUM * m + (1 - MOMENTUM) * x.mean(), MOMENTUM * v + (1 - MOMENTUM) * x.var()
    means["running-stats-scalar"], varis["running-stats-scalar"] = np.full(1, m), np.full(1, v)
    centred = running_stats(case, kind, stats=lambda x: (batch_stats(x, kind)[0], (x**2).mean(
        axis=(0,) if kind == "batch" else (0, 2, 3))))
    varis["variance-not-centred"] = centred[1]
    C = case.running_mean.size  # the same, averaged into running statistics that were per-channel
    spread = running_stats(case, kind, stats=lambda x: (np.full(C, x.mean()), np.full(C, x.var())))
    means["running-stats-scalar:b"], varis["running-stats-scalar:b"] = spread
    if kind == "spatial":
        wrong = running_stats(case, kind, stats=lambda x: (unshuffled(x).mean(0), unshuffled(x).var(0)))
        means["reshape-without-transpose"], varis["reshape-without-transpose"] = wrong
    return means, varis


def test_mutants(x, case: Case, kind, mean, var) -> dict[str, np.ndarray]:
    """Test-mode outputs of the test-mode mistakes, alone and combined, given the running
    statistics used: which statistics (running or the batch's) x the denominator x the affine step."""
    mutants = {}
    bm, bv = batch_stats(x, kind)
    for sname, (m, v) in (("", (mean, var)), ("test-uses-batch-stats", (bm, bv))):
        for how in ("", "eps-outside-sqrt", "eps-missing", "test-divides-by-var"):
            for affine in ("", "test-drops-affine", "test-beta-sign"):
                name = _join(sname, how, affine)
                if name:
                    mutants[name] = test_out(x, case, kind, m, v, how or "right", affine)
    if kind == "spatial":  # the same slip in test mode: statistics per column of the wrong view
        mutants["reshape-without-transpose"] = unshuffled_out(x, case, mean, var)
    return mutants


__all__ = ["RUNNING", "forward_out", "forward_mutants", "backward_mutants", "running_mutants", "test_mutants",
           "test_out", "running_stats", "dx_terms", "param_grads", "param_sum_mutants", "unshuffled_grads",
           "param_axes", "channel_shape", "wrong_views", "view"]
