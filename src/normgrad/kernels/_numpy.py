"""The NumPy path: the same kernels as ``_numba.py``, same signatures.

Used when Numba is missing or the NumPy path is forced; tested against the
Numba kernels and a float64 reference. Statistics and the closed-form backward
come from ``core.stats`` (float64 accumulation, two-piece centring, two-pass
variance). x, y, dy, dx are (N, C, L) views.
"""

from __future__ import annotations

import numpy as np

from ..core.stats import moments, normalize_backward

_C = (1, -1, 1)  # a (C,) vector against (N, C, L)


def channel_stats(x, nchunks):
    mean, var, _ = moments(x, (0, 2))
    return mean.reshape(-1), var.reshape(-1)


def _xmu(x, mean):
    """x - mean in float64; mean broadcasts against x."""
    return x.astype(np.float64) - mean


def channel_affine(x, mean, invstd, gamma, beta, y, nchunks):
    y[...] = _xmu(x, mean.reshape(_C)) * (invstd * gamma).reshape(_C) + beta.reshape(_C)


def channel_grad_sums(dy, x, mean, nchunks):
    dy64 = dy.astype(np.float64)
    return dy64.sum(axis=(0, 2)), (dy64 * _xmu(x, mean.reshape(_C))).sum(axis=(0, 2))


def channel_grad_input(dy, x, mean, scale, c1, c2, dx, nchunks):
    xmu = _xmu(x, mean.reshape(_C))
    dx[...] = scale.reshape(_C) * (dy.astype(np.float64) - c1.reshape(_C) - xmu * c2.reshape(_C))


def _grouped(a, G):
    """(N, C, L) viewed as (N, G, C/G, L)."""
    N, C, L = a.shape
    return a.reshape(N, G, C // G, L)


def row_forward(x, gamma, beta, G, eps, y, mean, var, invstd):
    m, s2, _ = moments(_grouped(x, G), (2, 3))
    mean[...], var[...] = m.reshape(mean.shape), s2.reshape(var.shape)
    invstd[...] = 1.0 / np.sqrt(var + eps)
    xhat = _xmu(_grouped(x, G), mean[:, :, None, None]) * invstd[:, :, None, None]
    y[...] = xhat.reshape(x.shape) * gamma.reshape(_C) + beta.reshape(_C)


def row_backward(dy, x, gamma, G, mean, invstd, dx, nchunks):
    ivar = invstd[:, :, None, None]
    xhat = _xmu(_grouped(x, G), mean[:, :, None, None]) * ivar
    dy64 = dy.astype(np.float64)
    dgamma = (dy64 * xhat.reshape(x.shape)).sum(axis=(0, 2))
    dbeta = dy64.sum(axis=(0, 2))
    dxhat = _grouped(dy64 * gamma.reshape(_C), G)
    dx[...] = normalize_backward(dxhat, xhat, ivar, (2, 3)).reshape(x.shape)
    return dgamma, dbeta
