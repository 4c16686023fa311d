"""Numba kernels for per-sample statistics of channels-last data (group and instance norm
on an NHWC tensor), x viewed as (N, L, C): L positions of C channels, channels innermost.

Statistic (n, g) covers the L positions of sample n and the Cg = C // G channels
g * Cg ... (g + 1) * Cg - 1. Samples are split over ``nchunks`` chunks. Each sample's
per-channel sums run along C (contiguous: they vectorize) over its L rows, FLUSH rows
at a time in x's dtype, then in float64 (``_numba_channel``'s ``_blocked_sums`` and
``_blocked_grad_sums``), with every channel of a group shifted by the group's first
value; a group's statistics are the sums of its channels' (the error bound of
``_numba_channel``, with n = L * Cg). Elementwise work is in x's dtype, x - mean as
(x - mean_hi) - mean_lo. Centred norms only (group and instance norm).
"""

from __future__ import annotations

import numpy as np

from ._numba_base import column_sums, helper, variants
from ._numba_channel import _blocked_grad_sums, _blocked_sums


@helper
def _group_moments(s1, s2, shift, G, M, eps, mean, var, invstd):
    """(mean, var, invstd) (G,) of each group from its channels' float64 sums s1, s2 (C,)
    of x - shift and its square over M values per group."""
    Cg = s1.size // G
    for g in range(G):
        t1 = 0.0
        t2 = 0.0
        for c in range(g * Cg, (g + 1) * Cg):
            t1 += s1[c]
            t2 += s2[c]
        m = t1 / M
        mean[g] = np.float64(shift[g * Cg]) + m
        var[g] = max(t2 / M - m * m, 0.0)
        invstd[g] = 1.0 / np.sqrt(var[g] + eps)


@helper
def _per_channel_mean(mean, G, mean_hi, mean_lo):
    """Each channel's group mean as two values of x's dtype (hi, then the remainder)."""
    Cg = mean_hi.size // G
    for c in range(mean_hi.size):
        m = mean[c // Cg]
        mean_hi[c] = m
        mean_lo[c] = m - np.float64(mean_hi[c])


def _forward(loop):
    def last_forward(x, gamma, beta, G, eps, y, mean, var, invstd, nchunks):
        """Statistics (N, G) float64 of x (N, L, C) and y = xhat * gamma + beta (gamma,
        beta (C,) in x's dtype); writes y and mean, var, invstd."""
        N, L, C = x.shape
        Cg = C // G
        for ch in loop(nchunks):
            s1 = np.zeros(C)
            s2 = np.zeros(C)
            shift = np.empty(C, dtype=x.dtype)
            mh = np.empty(C, dtype=x.dtype)
            ml = np.empty(C, dtype=x.dtype)
            scale = np.empty(C, dtype=x.dtype)
            for n in range(ch * N // nchunks, (ch + 1) * N // nchunks):
                s1[:] = 0.0
                s2[:] = 0.0
                for c in range(C):
                    shift[c] = x[n, 0, (c // Cg) * Cg]
                _blocked_sums(x[n], 0, L, shift, None, s1, s2)
                _group_moments(s1, s2, shift, G, L * Cg, eps, mean[n], var[n], invstd[n])
                _per_channel_mean(mean[n], G, mh, ml)
                for c in range(C):
                    scale[c] = invstd[n, c // Cg] * gamma[c]
                xn, yn = x[n], y[n]
                for i in range(L):
                    for c in range(C):
                        yn[i, c] = ((xn[i, c] - mh[c]) - ml[c]) * scale[c] + beta[c]
    return last_forward


def _backward(loop):
    def last_backward(dy, x, gamma, G, mean, invstd, dx, nchunks):
        """dx (into ``dx``) and dgamma, dbeta (C,) float64 of ``last_forward``; gamma in x's dtype."""
        N, L, C = x.shape
        Cg = C // G
        M = L * Cg
        pg = np.zeros((nchunks, C))
        pb = np.zeros((nchunks, C))
        for ch in loop(nchunks):
            sd = np.zeros(C)
            sdx = np.zeros(C)
            mh = np.empty(C, dtype=x.dtype)
            ml = np.empty(C, dtype=x.dtype)
            a = np.empty(C, dtype=x.dtype)
            b = np.empty(C, dtype=x.dtype)
            k = np.empty(C, dtype=x.dtype)
            for n in range(ch * N // nchunks, (ch + 1) * N // nchunks):
                sd[:] = 0.0
                sdx[:] = 0.0
                _per_channel_mean(mean[n], G, mh, ml)
                _blocked_grad_sums(dy[n], x[n], 0, L, mh, ml, sd, sdx)
                for g in range(G):
                    r = invstd[n, g]
                    t1 = 0.0  # sum(gamma * dy) over the group
                    t2 = 0.0  # sum(gamma * dy * (x - mean))
                    for c in range(g * Cg, (g + 1) * Cg):
                        t1 += gamma[c] * sd[c]
                        t2 += gamma[c] * sdx[c]
                        pg[ch, c] += r * sdx[c]
                        pb[ch, c] += sd[c]
                    for c in range(g * Cg, (g + 1) * Cg):
                        a[c] = r * gamma[c]
                        b[c] = r * t1 / M
                        k[c] = r * r * r * t2 / M
                dyn, xn, dxn = dy[n], x[n], dx[n]
                for i in range(L):
                    for c in range(C):
                        dxn[i, c] = a[c] * dyn[i, c] - b[c] - ((xn[i, c] - mh[c]) - ml[c]) * k[c]
        return column_sums(pg), column_sums(pb)
    return last_backward


PARALLEL, SERIAL = variants({"last_forward": _forward, "last_backward": _backward})
