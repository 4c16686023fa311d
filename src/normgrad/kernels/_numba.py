"""Fused Numba kernels. Imported only when Numba is installed (see __init__.py);
each is compiled on its first call (and cached on disk), not at import.

Two families cover every norm:

- channel statistics (batch norm): x viewed as (N, C, L), statistics per channel
  over N and L, in one pass over x. Threads take chunks of N; each accumulates
  float64 sums of d = x - K and d**2, shifted by K = the channel's first value,
  and the chunks' sums are added (they share the shift). var = S2/n - (S1/n)**2.
  With float64 accumulation of n values the absolute error of var is at most
  about n * 2**-52 * (var + (mean - K)**2): the shift keeps (mean - K)**2 of the
  order of var unless the first value is an extreme outlier, so float32 data
  with a mean of 1e4 and std 1 keeps its variance to about 1e-11 relative (n = 65536).
- row statistics (layer and group norm): x viewed as (N, C, L) with G groups;
  statistics per (n, g) row of C/G * L values, two-pass within the row (which
  is in cache). gamma and beta are per channel; layer norm is G = 1, L = 1.

Elementwise work is done in float64 and stored in x's dtype. The forward
writes only y; the backward recomputes xhat from x, mean and invstd, so no
array of x's size is kept between them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# reassoc lets float64 sums vectorize (their order changes, not their precision);
# no flags that assume away NaN/Inf or change rounding of single operations.
_OPTS = dict(parallel=True, cache=True, nogil=True, fastmath={"reassoc", "contract"})


@njit(**_OPTS)
def channel_stats(x, nchunks):
    """Per-channel mean and biased variance of x (N, C, L), float64."""
    N, C, L = x.shape
    s1 = np.empty((nchunks, C))
    s2 = np.empty((nchunks, C))
    shift = np.empty(C)
    for c in range(C):
        shift[c] = x[0, c, 0]
    x2 = x.reshape((N, C * L))  # rows of a C-contiguous 2-D view vectorize; x[n, :, 0] does not
    for k in prange(nchunks):
        a1 = s1[k]
        a2 = s2[k]
        for c in range(C):
            a1[c] = 0.0
            a2[c] = 0.0
        for n in range(k * N // nchunks, (k + 1) * N // nchunks):
            if L == 1:
                row = x2[n]
                for c in range(C):
                    d = np.float64(row[c]) - shift[c]
                    a1[c] += d
                    a2[c] += d * d
            else:
                for c in range(C):
                    row = x[n, c]
                    K = shift[c]
                    a = 0.0
                    b = 0.0
                    for i in range(L):
                        d = np.float64(row[i]) - K
                        a += d
                        b += d * d
                    a1[c] += a
                    a2[c] += b
    count = N * L
    mean = np.empty(C)
    var = np.empty(C)
    for c in range(C):
        t1 = 0.0
        t2 = 0.0
        for k in range(nchunks):
            t1 += s1[k, c]
            t2 += s2[k, c]
        m = t1 / count
        mean[c] = shift[c] + m
        var[c] = max(t2 / count - m * m, 0.0)
    return mean, var


@njit(**_OPTS)
def channel_affine(x, mean, invstd, gamma, beta, y, nchunks):
    """y = (x - mean) * invstd * gamma + beta per channel, x and y (N, C, L)."""
    N, C, L = x.shape
    scale = np.empty(C)
    for c in range(C):
        scale[c] = invstd[c] * gamma[c]
    x2, y2 = x.reshape((N, C * L)), y.reshape((N, C * L))
    for k in prange(nchunks):
        for n in range(k * N // nchunks, (k + 1) * N // nchunks):
            if L == 1:
                row = x2[n]
                out = y2[n]
                for c in range(C):
                    out[c] = (np.float64(row[c]) - mean[c]) * scale[c] + beta[c]
            else:
                for c in range(C):
                    row = x[n, c]
                    out = y[n, c]
                    m = mean[c]
                    s = scale[c]
                    b = beta[c]
                    for i in range(L):
                        out[i] = (np.float64(row[i]) - m) * s + b


@njit(**_OPTS)
def channel_grad_sums(dy, x, mean, nchunks):
    """Per-channel sum(dy) and sum(dy * (x - mean)) over x (N, C, L), float64."""
    N, C, L = x.shape
    sdy = np.empty((nchunks, C))
    sdyx = np.empty((nchunks, C))
    x2, dy2 = x.reshape((N, C * L)), dy.reshape((N, C * L))
    for k in prange(nchunks):
        a1 = sdy[k]
        a2 = sdyx[k]
        for c in range(C):
            a1[c] = 0.0
            a2[c] = 0.0
        for n in range(k * N // nchunks, (k + 1) * N // nchunks):
            if L == 1:
                grow = dy2[n]
                row = x2[n]
                for c in range(C):
                    g = np.float64(grow[c])
                    a1[c] += g
                    a2[c] += g * (np.float64(row[c]) - mean[c])
            else:
                for c in range(C):
                    grow = dy[n, c]
                    row = x[n, c]
                    m = mean[c]
                    a = 0.0
                    b = 0.0
                    for i in range(L):
                        g = np.float64(grow[i])
                        a += g
                        b += g * (np.float64(row[i]) - m)
                    a1[c] += a
                    a2[c] += b
    t1 = np.zeros(C)
    t2 = np.zeros(C)
    for c in range(C):
        for k in range(nchunks):
            t1[c] += sdy[k, c]
            t2[c] += sdyx[k, c]
    return t1, t2


@njit(**_OPTS)
def channel_grad_input(dy, x, mean, scale, c1, c2, dx, nchunks):
    """dx = scale * (dy - c1 - (x - mean) * c2) per channel, all (N, C, L)."""
    N, C, L = x.shape
    x2, dy2, dx2 = x.reshape((N, C * L)), dy.reshape((N, C * L)), dx.reshape((N, C * L))
    for k in prange(nchunks):
        for n in range(k * N // nchunks, (k + 1) * N // nchunks):
            if L == 1:
                grow = dy2[n]
                row = x2[n]
                out = dx2[n]
                for c in range(C):
                    xm = np.float64(row[c]) - mean[c]
                    out[c] = scale[c] * (np.float64(grow[c]) - c1[c] - xm * c2[c])
            else:
                for c in range(C):
                    grow = dy[n, c]
                    row = x[n, c]
                    out = dx[n, c]
                    m = mean[c]
                    s = scale[c]
                    a = c1[c]
                    b = c2[c]
                    for i in range(L):
                        out[i] = s * (np.float64(grow[i]) - a - (np.float64(row[i]) - m) * b)


@njit(**_OPTS)
def row_forward(x, gamma, beta, G, eps, y, mean, var_out, invstd):
    """Group statistics of x (N, C, L) per (n, g), two-pass; writes y and mean, var, invstd (N, G)."""
    N, C, L = x.shape
    Cg = C // G
    count = Cg * L
    for r in prange(N * G):
        n = r // G
        g = r % G
        s = 0.0
        for c in range(g * Cg, (g + 1) * Cg):
            for i in range(L):
                s += np.float64(x[n, c, i])
        m = s / count
        s2 = 0.0
        s1 = 0.0
        for c in range(g * Cg, (g + 1) * Cg):
            for i in range(L):
                d = np.float64(x[n, c, i]) - m
                s1 += d
                s2 += d * d
        var = max((s2 - s1 * s1 / count) / count, 0.0)
        inv = 1.0 / np.sqrt(var + eps)
        mean[n, g] = m
        var_out[n, g] = var
        invstd[n, g] = inv
        for c in range(g * Cg, (g + 1) * Cg):
            sc = inv * gamma[c]
            b = beta[c]
            for i in range(L):
                y[n, c, i] = (np.float64(x[n, c, i]) - m) * sc + b


@njit(**_OPTS)
def row_backward(dy, x, gamma, G, mean, invstd, dx, nchunks):
    """dx (into ``dx``), dgamma, dbeta (C,) for row_forward's normalization."""
    N, C, L = x.shape
    Cg = C // G
    count = Cg * L
    pg = np.zeros((nchunks, C))
    pb = np.zeros((nchunks, C))
    for k in prange(nchunks):
        for n in range(k * N // nchunks, (k + 1) * N // nchunks):
            for g in range(G):
                m = mean[n, g]
                inv = invstd[n, g]
                a = 0.0  # sum of dxhat
                b = 0.0  # sum of dxhat * xhat
                for c in range(g * Cg, (g + 1) * Cg):
                    ga = gamma[c]
                    sg = 0.0
                    sgx = 0.0
                    for i in range(L):
                        d = np.float64(dy[n, c, i])
                        xh = (np.float64(x[n, c, i]) - m) * inv
                        sg += d
                        sgx += d * xh
                    pb[k, c] += sg
                    pg[k, c] += sgx
                    a += ga * sg
                    b += ga * sgx
                a /= count
                b /= count
                for c in range(g * Cg, (g + 1) * Cg):
                    for i in range(L):
                        xh = (np.float64(x[n, c, i]) - m) * inv
                        dx[n, c, i] = inv * (gamma[c] * np.float64(dy[n, c, i]) - a - xh * b)
    dgamma = np.zeros(C)
    dbeta = np.zeros(C)
    for c in range(C):
        for k in range(nchunks):
            dgamma[c] += pg[k, c]
            dbeta[c] += pb[k, c]
    return dgamma, dbeta
