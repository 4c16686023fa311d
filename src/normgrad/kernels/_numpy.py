"""The NumPy path: the same kernels as ``_numba.py``, same signatures.

Used when Numba is missing or the NumPy path is forced; tested against the
Numba kernels and a float64 reference. Statistics come from
``functional.stats`` (float64 accumulation, two-piece centring).
"""

from __future__ import annotations

import numpy as np

from ..functional.stats import moments


def channel_stats(x, nchunks):
    mean, var, _ = moments(x, (0, 2))
    return mean.reshape(-1), var.reshape(-1)


def _xhat(x, mean, invstd):
    """(x - mean) * invstd in float64; mean and invstd broadcast against x."""
    return (x.astype(np.float64) - mean) * invstd


def channel_affine(x, mean, invstd, gamma, beta, y, nchunks):
    c = (1, -1, 1)
    y[...] = _xhat(x, mean.reshape(c), invstd.reshape(c)) * gamma.reshape(c) + beta.reshape(c)


def channel_forward(x, gamma, beta, eps, y, nchunks):
    mean, var = channel_stats(x, nchunks)
    invstd = 1.0 / np.sqrt(var + eps)
    channel_affine(x, mean, invstd, gamma, beta, y, nchunks)
    return mean, invstd


def channel_grad_sums(dy, x, mean, nchunks):
    dy64 = dy.astype(np.float64)
    xmu = x.astype(np.float64) - mean.reshape(1, -1, 1)
    return dy64.sum(axis=(0, 2)), (dy64 * xmu).sum(axis=(0, 2))


def channel_grad_input(dy, x, mean, scale, c1, c2, dx, nchunks):
    c = (1, -1, 1)
    xmu = x.astype(np.float64) - mean.reshape(c)
    dx[...] = scale.reshape(c) * (dy.astype(np.float64) - c1.reshape(c) - xmu * c2.reshape(c))


def channel_backward(dy, x, mean, invstd, gamma, batch_stats, dx, nchunks):
    dbeta, t2 = channel_grad_sums(dy, x, mean, nchunks)
    count = x.shape[0] * x.shape[2]
    zero = np.zeros_like(dbeta)
    c1 = dbeta / count if batch_stats else zero
    c2 = t2 * invstd**2 / count if batch_stats else zero
    channel_grad_input(dy, x, mean, gamma * invstd, c1, c2, dx, nchunks)
    return t2 * invstd, dbeta


def _grouped(a, G):
    N, C, L = a.shape
    return a.reshape(N, G, C // G, L)


def row_forward(x, gamma, beta, G, eps, y, mean, invstd):
    m, var, _ = moments(_grouped(x, G), (2, 3))
    mean[...] = m.reshape(mean.shape)
    invstd[...] = 1.0 / np.sqrt(var.reshape(mean.shape) + eps)
    xhat = _xhat(_grouped(x, G), mean[:, :, None, None], invstd[:, :, None, None])
    N, C, L = x.shape
    y[...] = xhat.reshape(N, C, L) * gamma.reshape(1, C, 1) + beta.reshape(1, C, 1)


def row_backward(dy, x, gamma, G, mean, invstd, dx, nchunks):
    N, C, L = x.shape
    xhat = _xhat(_grouped(x, G), mean[:, :, None, None], invstd[:, :, None, None]).reshape(N, C, L)
    dy64 = dy.astype(np.float64)
    dgamma = (dy64 * xhat).sum(axis=(0, 2))
    dbeta = dy64.sum(axis=(0, 2))
    dxhat = _grouped(dy64 * gamma.reshape(1, C, 1), G)
    xh = _grouped(xhat, G)
    d = dxhat - dxhat.mean(axis=(2, 3), keepdims=True) - xh * (dxhat * xh).mean(axis=(2, 3), keepdims=True)
    dx[...] = (d * invstd[:, :, None, None]).reshape(N, C, L)
    return dgamma, dbeta
