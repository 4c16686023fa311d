"""The NumPy path: the same kernels as ``_numba.py``, same signatures.

Used when Numba is missing or the NumPy path is forced; tested against the
Numba kernels and a float64 reference. Statistics and the closed-form backward
come from ``core.stats`` (float64 accumulation, two-piece centring, two-pass
variance); elementwise work is in float64. Channel kernels take x as (N, C, L),
row kernels as (R, K, L).
"""

from __future__ import annotations

import numpy as np

from ..core.stats import mean_square, moments, normalize_backward

_C = (1, -1, 1)  # a (C,) vector against (N, C, L)


def _channel_weights(weights):
    """weights (N, L) (or None) against x (N, C, L)."""
    return None if weights is None else weights[:, None, :]


def channel_stats(x, centered, weights, count, nchunks):
    w = _channel_weights(weights)
    if not centered:
        ms = mean_square(x, (0, 2), w).reshape(-1)
        return np.zeros_like(ms), ms
    mean, var, _ = moments(x, (0, 2), w)
    return mean.reshape(-1), var.reshape(-1)


def _xmu(x, hi, lo):
    """x - (hi + lo) in float64; hi and lo broadcast against x."""
    return x.astype(np.float64) - hi.astype(np.float64) - lo.astype(np.float64)


def channel_affine(x, mean_hi, mean_lo, scale, shift, y, nchunks):
    y[...] = _xmu(x, mean_hi.reshape(_C), mean_lo.reshape(_C)) * scale.reshape(_C) + shift.reshape(_C)


def channel_grad_sums(dy, x, mean_hi, mean_lo, nchunks):
    dy64 = dy.astype(np.float64)
    return dy64.sum(axis=(0, 2)), (dy64 * _xmu(x, mean_hi.reshape(_C), mean_lo.reshape(_C))).sum(axis=(0, 2))


def channel_grad_input(dy, x, mean_hi, mean_lo, scale, c1, c2, weights, dx, nchunks):
    xmu = _xmu(x, mean_hi.reshape(_C), mean_lo.reshape(_C))
    through_stats = c1.reshape(_C) + xmu * c2.reshape(_C)
    if weights is not None:
        through_stats *= _channel_weights(weights)
    dx[...] = (dy.astype(np.float64) - through_stats) * scale.reshape(_C)


def channel_double_sums(dy, x, a, mean_hi, mean_lo, nchunks):
    xmu = _xmu(x, mean_hi.reshape(_C), mean_lo.reshape(_C))
    dy64, a64 = dy.astype(np.float64), a.astype(np.float64)
    return np.stack([t.sum(axis=(0, 2)) for t in (dy64, dy64 * xmu, a64, a64 * xmu, a64 * dy64)])


def channel_double_apply(dy, x, a, mean_hi, mean_lo, coefs, ddy, dx, nchunks):
    xmu = _xmu(x, mean_hi.reshape(_C), mean_lo.reshape(_C))
    ca, cx, c0, kdy, ka, k1, k0 = (c.astype(np.float64).reshape(_C) for c in coefs)
    a64 = a.astype(np.float64)
    ddy[...] = ca * a64 + cx * xmu + c0
    dx[...] = kdy * dy.astype(np.float64) + ka * a64 + k1 * xmu + k0


def _row_weights(weights, x):
    """weights (R // G, L) (or None) against x (R, K, L): row r takes sample r // G's."""
    if weights is None:
        return None
    return np.repeat(weights, x.shape[0] // weights.shape[0], axis=0)[:, None, :]


def _row_stats(x, centered, w):
    """(mean, var) per row of x (R, K, L) over its valid positions, shaped (R, 1, 1), float64."""
    if centered:
        m, s2, _ = moments(x, (1, 2), w)
        return m, s2
    ms = mean_square(x, (1, 2), w)
    return np.zeros_like(ms), ms


def _row_params(a, x):
    """gamma or beta (G*K,) against x (R, K, L): row r takes channels (r % G) * K + k."""
    R, K, _ = x.shape
    G = a.size // K
    return np.tile(a.astype(np.float64).reshape(G, K), (R // G, 1)).reshape(R, K, 1)


def row_forward(x, gamma, beta, G, eps, centered, weights, y, mean, var, invstd, nchunks):
    m, s2 = _row_stats(x, centered, _row_weights(weights, x))
    mean[...], var[...] = m.reshape(-1), s2.reshape(-1)
    invstd[...] = 1.0 / np.sqrt(var + eps)
    xhat = (x.astype(np.float64) - m) * invstd.reshape(-1, 1, 1)
    y[...] = xhat * _row_params(gamma, x) + _row_params(beta, x)


def row_backward(dy, x, gamma, G, centered, weights, mean, invstd, dx, nchunks):
    R, K, L = x.shape
    inv = invstd.reshape(-1, 1, 1)  # against (R, K, L)
    xhat = (x.astype(np.float64) - mean.reshape(-1, 1, 1)) * inv
    dy64 = dy.astype(np.float64)
    dgamma = (dy64 * xhat).sum(axis=2).reshape(R // G, G * K).sum(axis=0)
    dbeta = dy64.sum(axis=2).reshape(R // G, G * K).sum(axis=0)
    dxhat = dy64 * _row_params(gamma, x)
    dx[...] = normalize_backward(dxhat, xhat, inv, (1, 2), centered, _row_weights(weights, x))
    return dgamma, dbeta


def _last_view(a, G):
    """(N, L, C) as (N, L, G, C // G), float64: statistic (n, g) over axes 1 and 3."""
    N, L, C = a.shape
    return a.astype(np.float64).reshape(N, L, G, C // G)


def last_forward(x, gamma, beta, G, eps, y, mean, var, invstd, nchunks):
    m, s2, _ = moments(x.reshape(x.shape[0], x.shape[1], G, -1), (1, 3))
    mean[...], var[...] = m.reshape(mean.shape), s2.reshape(var.shape)
    invstd[...] = 1.0 / np.sqrt(var + eps)
    xhat = (_last_view(x, G) - m) * invstd.reshape(-1, 1, G, 1)
    y[...] = (xhat.reshape(x.shape) * gamma.astype(np.float64) + beta.astype(np.float64))


def last_backward(dy, x, gamma, G, mean, invstd, dx, nchunks):
    N, L, C = x.shape
    inv = invstd.reshape(N, 1, G, 1)
    xhat = (_last_view(x, G) - mean.reshape(N, 1, G, 1)) * inv
    dy64 = _last_view(dy, G)
    dgamma = (dy64 * xhat).sum(axis=(0, 1)).reshape(C)
    dbeta = dy64.sum(axis=(0, 1)).reshape(C)
    dxhat = dy64 * gamma.astype(np.float64).reshape(1, 1, G, C // G)
    dx[...] = normalize_backward(dxhat, xhat, inv, (1, 3), True, None).reshape(x.shape)
    return dgamma, dbeta


def row_double_backward(dy, x, a, gamma, ga, gb, G, centered, mean, invstd, ddy, dx, nchunks):
    """The closed form, term by term in float64 (``_numba_row``'s comment gives it)."""
    R, K, L = x.shape
    axes = (1, 2)
    r = invstd.reshape(-1, 1, 1)
    xhat = (x.astype(np.float64) - mean.reshape(-1, 1, 1)) * r
    dy64, a64 = dy.astype(np.float64), a.astype(np.float64)
    gam, ga64, gb64 = _row_params(gamma, x), _row_params(ga, x), _row_params(gb, x)

    def avg(v):
        return v.mean(axis=axes, keepdims=True)

    def project(v):  # P(v) = v - <v> - xhat <v xhat> (uncentred: no <v>)
        return v - (avg(v) if centered else 0.0) - xhat * avg(v * xhat)

    g = dy64 * gam
    pa = project(a64)
    ddy[...] = gam * r * pa + ga64 * xhat + gb64
    h = ga64 * dy64 - r * (a64 * avg(g * xhat) + g * avg(a64 * xhat))
    dx[...] = r * project(h) - r * r * xhat * avg(a64 * project(g))
    return (dy64 * r * pa).sum(axis=2).reshape(R // G, G * K).sum(axis=0)


def adam_step(w, dw, m, v, lr, beta1, beta2, epsilon, t, next_w, next_m, next_v):
    next_m[...] = beta1 * m + (1 - beta1) * dw
    next_v[...] = beta2 * v + (1 - beta2) * (dw * dw)
    tiny = np.finfo(w.dtype).tiny  # subnormal moments are stored as 0, as in the Numba kernel
    next_m[np.abs(next_m) < tiny] = 0
    next_v[next_v < tiny] = 0
    next_w[...] = w - lr / (1 - beta1**t) * next_m / (np.sqrt(next_v / (1 - beta2**t)) + epsilon)
