"""Numba kernels of the channel family: statistics across the batch (batch norm and
every norm whose spec has ``across="batch"``), x viewed as (N, C, L).

Work is split over ``nchunks`` chunks of N, rows ``k * N // nchunks`` up to
``(k + 1) * N // nchunks``; each chunk keeps per-channel float64 partial sums, added
in chunk order at the end. With L = 1 ((N, C) data) the inner loops run along C,
with L > 1 ((N, C, *spatial)) along L: both contiguous, both vectorize.

Statistics are one pass over x: float64 sums of d = x - K and d**2, shifted by K =
the channel's first value (K = 0 and mean = 0 uncentred, where var is the mean
square); var = S2/n - (S1/n)**2. With float64 accumulation of n values the absolute
error of var is at most about n * 2**-52 * (var + (mean - K)**2): the shift keeps
(mean - K)**2 of the order of var unless the first value is an extreme outlier, so
float32 data with mean 1e4 and std 1 keeps its variance to about 1e-11 relative at
n = 65536. With L = 1, the terms of up to FLUSH rows are added in x's dtype
(vector-wide) before they join the float64 sums: at most FLUSH * 2**-24 of the
terms' magnitude more for float32.

Elementwise work is in x's dtype; x - mean is (x - mean_hi) - mean_lo, the float64
mean split into two values of x's dtype (exact when x is near the mean).
"""

from __future__ import annotations

import numpy as np

from ._numba_base import FLUSH, column_sums, drain, helper, variants


@helper
def _blocked_sums(x2, lo, hi, shift, acc1, acc2):
    """acc1 += sum(x2[n] - shift), acc2 += sum((x2[n] - shift)**2) over rows lo..hi-1
    of x2 (N, C): FLUSH rows at a time in x's dtype, then into the float64 acc."""
    C = shift.size
    b1 = np.zeros(C, dtype=x2.dtype)
    b2 = np.zeros(C, dtype=x2.dtype)
    pending = 0
    for n in range(lo, hi):
        row = x2[n]
        for c in range(C):
            d = row[c] - shift[c]
            b1[c] += d
            b2[c] += d * d
        pending += 1
        if pending == FLUSH or n == hi - 1:
            pending = 0
            drain(acc1, acc2, b1, b2)


@helper
def _plane_sums(x, lo, hi, shift, acc1, acc2):
    """As ``_blocked_sums`` for x (N, C, L), L > 1: each plane's sums in float64."""
    for n in range(lo, hi):
        for c in range(x.shape[1]):
            plane = x[n, c]
            K = np.float64(shift[c])
            a = 0.0
            b = 0.0
            for i in range(plane.size):
                d = plane[i] - K
                a += d
                b += d * d
            acc1[c] += a
            acc2[c] += b


@helper
def _finish_moments(t1, t2, shift, count, centered):
    """(mean, biased var) per channel from the float64 totals of d = x - shift and d**2;
    uncentred (shift 0): (0, the mean square)."""
    mean = np.zeros(t1.size)
    var = np.empty(t1.size)
    for c in range(t1.size):
        if centered:
            m = t1[c] / count
            mean[c] = np.float64(shift[c]) + m
            var[c] = max(t2[c] / count - m * m, 0.0)
        else:
            var[c] = t2[c] / count
    return mean, var


def _stats(loop):
    def channel_stats(x, centered, nchunks):
        """Per-channel mean and biased variance of x (N, C, L), float64 (C,) each;
        uncentred: mean 0 and var the mean square."""
        N, C, L = x.shape
        s1 = np.zeros((nchunks, C))
        s2 = np.zeros((nchunks, C))
        shift = np.zeros(C, dtype=x.dtype)
        if centered:
            for c in range(C):
                shift[c] = x[0, c, 0]
        x2 = x.reshape((N, C * L))  # rows of a C-contiguous 2-D view vectorize; x[n, :, 0] does not
        for k in loop(nchunks):
            lo, hi = k * N // nchunks, (k + 1) * N // nchunks
            if L == 1:
                _blocked_sums(x2, lo, hi, shift, s1[k], s2[k])
            else:
                _plane_sums(x, lo, hi, shift, s1[k], s2[k])
        return _finish_moments(column_sums(s1), column_sums(s2), shift, N * L, centered)
    return channel_stats


def _affine(loop):
    def channel_affine(x, mean_hi, mean_lo, scale, shift, y, nchunks):
        """y = ((x - mean_hi) - mean_lo) * scale + shift per channel; x, y (N, C, L);
        the coefficients (C,) in x's dtype."""
        N, C, L = x.shape
        x2, y2 = x.reshape((N, C * L)), y.reshape((N, C * L))
        for k in loop(nchunks):
            for n in range(k * N // nchunks, (k + 1) * N // nchunks):
                if L == 1:
                    row = x2[n]
                    out = y2[n]
                    for c in range(C):
                        out[c] = ((row[c] - mean_hi[c]) - mean_lo[c]) * scale[c] + shift[c]
                else:
                    for c in range(C):
                        plane = x[n, c]
                        out = y[n, c]
                        mh, ml, s, b = mean_hi[c], mean_lo[c], scale[c], shift[c]
                        for i in range(L):
                            out[i] = ((plane[i] - mh) - ml) * s + b
    return channel_affine


@helper
def _blocked_grad_sums(d2, x2, lo, hi, mean_hi, mean_lo, acc1, acc2):
    """acc1 += sum(dy), acc2 += sum(dy * (x - mean)) over rows lo..hi-1 of (N, C)
    views: FLUSH rows at a time in x's dtype, then into the float64 acc."""
    C = mean_hi.size
    b1 = np.zeros(C, dtype=x2.dtype)
    b2 = np.zeros(C, dtype=x2.dtype)
    pending = 0
    for n in range(lo, hi):
        g = d2[n]
        row = x2[n]
        for c in range(C):
            b1[c] += g[c]
            b2[c] += g[c] * ((row[c] - mean_hi[c]) - mean_lo[c])
        pending += 1
        if pending == FLUSH or n == hi - 1:
            pending = 0
            drain(acc1, acc2, b1, b2)


@helper
def _plane_grad_sums(dy, x, lo, hi, mean_hi, mean_lo, acc1, acc2):
    """As ``_blocked_grad_sums`` for (N, C, L) arrays, L > 1: float64 per plane."""
    for n in range(lo, hi):
        for c in range(x.shape[1]):
            gp = dy[n, c]
            plane = x[n, c]
            mh, ml = mean_hi[c], mean_lo[c]
            a = 0.0
            b = 0.0
            for i in range(plane.size):
                a += gp[i]
                b += gp[i] * ((plane[i] - mh) - ml)
            acc1[c] += a
            acc2[c] += b


def _grad_sums(loop):
    def channel_grad_sums(dy, x, mean_hi, mean_lo, nchunks):
        """Per-channel sum(dy) and sum(dy * (x - mean)) over dy, x (N, C, L): (C,) float64."""
        N, C, L = x.shape
        p1 = np.zeros((nchunks, C))
        p2 = np.zeros((nchunks, C))
        x2, d2 = x.reshape((N, C * L)), dy.reshape((N, C * L))
        for k in loop(nchunks):
            lo, hi = k * N // nchunks, (k + 1) * N // nchunks
            if L == 1:
                _blocked_grad_sums(d2, x2, lo, hi, mean_hi, mean_lo, p1[k], p2[k])
            else:
                _plane_grad_sums(dy, x, lo, hi, mean_hi, mean_lo, p1[k], p2[k])
        return column_sums(p1), column_sums(p2)
    return channel_grad_sums


def _grad_input(loop):
    def channel_grad_input(dy, x, mean_hi, mean_lo, scale, c1, c2, dx, nchunks):
        """dx = (dy - c1 - (x - mean) * c2) * scale per channel; coefficients (C,) in x's dtype."""
        N, C, L = x.shape
        x2, d2, o2 = x.reshape((N, C * L)), dy.reshape((N, C * L)), dx.reshape((N, C * L))
        for k in loop(nchunks):
            for n in range(k * N // nchunks, (k + 1) * N // nchunks):
                if L == 1:
                    g, row, out = d2[n], x2[n], o2[n]
                    for c in range(C):
                        out[c] = (g[c] - c1[c] - ((row[c] - mean_hi[c]) - mean_lo[c]) * c2[c]) * scale[c]
                else:
                    for c in range(C):
                        gp, plane, out = dy[n, c], x[n, c], dx[n, c]
                        mh, ml, s, a, b = mean_hi[c], mean_lo[c], scale[c], c1[c], c2[c]
                        for i in range(L):
                            out[i] = (gp[i] - a - ((plane[i] - mh) - ml) * b) * s
    return channel_grad_input


PARALLEL, SERIAL = variants({"channel_stats": _stats, "channel_affine": _affine,
                             "channel_grad_sums": _grad_sums, "channel_grad_input": _grad_input})
