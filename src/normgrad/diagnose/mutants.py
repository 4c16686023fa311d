"""The reference outputs of every probed function, and "mutants": what each output
would be with one common mistake, computed exactly as the mistaken code would.

Everything here is float64 NumPy on the probe's cases; nothing runs user code.
A norm is computed on a *view* of x: x reshaped so that its statistics reduce over
``axes`` of the view, with gamma and beta applied per channel of x. A mistake that
reduces over the wrong axes is the same computation on another view.
"""

from __future__ import annotations

import numpy as np

from .probe import EPS, MOMENTUM, RUNNING, TRAIN_STEPS, Case


def view(x, kind, G):
    """x reshaped so the norm's statistics are over ``axes``; returns (view, axes)."""
    if kind == "batch":
        return x, (0,)
    if kind == "layer":
        return x, (1,)
    if kind == "spatial":
        return x, (0, 2, 3)
    N, C, H, W = x.shape
    return x.reshape(N, G, C // G, H, W), (2, 3, 4)


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


def normalize(x, xv, axes, ddof=0, eps_outside=False, eps=EPS):
    """xhat of x with statistics of the view ``xv`` over ``axes``."""
    mu = xv.mean(axis=axes, keepdims=True)
    var = xv.var(axis=axes, keepdims=True, ddof=ddof)
    denom = np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps)
    return ((xv - mu) / denom).reshape(x.shape)


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


def test_out(x, case: Case, kind, mean, var, how: str = "right"):
    """Test-mode output with running statistics (mean, var), right or with one slip."""
    shape = channel_shape(kind, x)
    g, b = case.gamma.reshape(shape), case.beta.reshape(shape)
    m, v = mean.reshape(shape), var.reshape(shape)
    if how == "eps-outside-sqrt":
        return g * (x - m) / (np.sqrt(v) + EPS) + b
    if how == "eps-missing":
        return g * (x - m) / np.sqrt(v) + b
    if how == "test-drops-affine":
        return (x - m) / np.sqrt(v + EPS)
    if how == "test-divides-by-var":
        return g * (x - m) / (v + EPS) + b
    return g * (x - m) / np.sqrt(v + EPS) + b


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


def wrong_sums(x, dout, gamma, kind):
    """dx with the right statistics (from the cache) but the backward's sums taken over
    the wrong axis, or over everything; each divided by the right count, as written."""
    if kind not in ("batch", "layer"):
        return {}
    right, other = (0, 1) if kind == "batch" else (1, 0)
    n = x.shape[right]
    mu = x.mean(axis=right, keepdims=True)
    ivar = 1.0 / np.sqrt(x.var(axis=right, keepdims=True) + EPS)
    xhat = (x - mu) * ivar
    dxhat = dout * gamma.reshape(channel_shape(kind, x))
    out = {}
    for label, axis in (("other", other), ("all", None)):
        s1 = dxhat.sum(axis=axis, keepdims=axis is not None)
        s2 = (dxhat * xhat).sum(axis=axis, keepdims=axis is not None)
        out[f"wrong-axis:sums-{label}"] = ivar * (dxhat - s1 / n - xhat * s2 / n)
    return out


def forward_mutants(x, case: Case, kind) -> dict[str, np.ndarray]:
    """Training-mode outputs of the usual forward mistakes, by id (":k" tells variants apart)."""
    mutants = {"unbiased-variance": forward_out(x, case, kind, ddof=1),
               "eps-outside-sqrt": forward_out(x, case, kind, eps_outside=True),
               "eps-missing": forward_out(x, case, kind, eps=0.0),
               "drops-affine": forward_out(x, case, kind, affine=False)}
    for i, va in enumerate(wrong_views(x, kind, case.G)):
        mutants[f"wrong-axis:{i}"] = forward_out(x, case, kind, view_axes=va)
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
    if kind == "spatial":
        wrong = running_stats(case, kind, stats=lambda x: (unshuffled(x).mean(0), unshuffled(x).var(0)))
        means["reshape-without-transpose"], varis["reshape-without-transpose"] = wrong
    return means, varis


def test_mutants(x, case: Case, kind, mean, var) -> dict[str, np.ndarray]:
    """Test-mode outputs of the usual test-mode mistakes, given the running statistics used."""
    mutants = {how: test_out(x, case, kind, mean, var, how) for how in
               ("eps-outside-sqrt", "eps-missing", "test-drops-affine", "test-divides-by-var")}
    mutants["test-uses-batch-stats"] = forward_out(x, case, kind)
    if kind == "spatial":  # the same slip in test mode: statistics per column of the wrong view
        mutants["reshape-without-transpose"] = unshuffled_out(x, case, mean, var)
    return mutants


__all__ = ["RUNNING", "forward_out", "forward_mutants", "backward_mutants", "running_mutants", "test_mutants",
           "test_out", "running_stats", "dx_terms", "param_grads", "unshuffled_grads", "param_axes",
           "channel_shape", "wrong_views"]
