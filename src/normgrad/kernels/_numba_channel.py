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

from ._numba_base import FLUSH, column_sums, drain, drain_rows, helper, inlined, variants


@helper
def _blocked_sums(x2, lo, hi, shift, weights, acc1, acc2):
    """acc1 += sum(x2[n] - shift), acc2 += sum((x2[n] - shift)**2) over the valid rows
    lo..hi-1 of x2 (N, C) (weights (N, 1): 1 valid, 0 padding; None: all valid): FLUSH
    rows at a time in x's dtype, then into the float64 acc."""
    C = shift.size
    b1 = np.zeros(C, dtype=x2.dtype)
    b2 = np.zeros(C, dtype=x2.dtype)
    pending = 0
    for n in range(lo, hi):
        if weights is not None:
            if weights[n, 0] == 0:
                continue
        row = x2[n]
        for c in range(C):
            d = row[c] - shift[c]
            b1[c] += d
            b2[c] += d * d
        pending += 1
        if pending == FLUSH:
            pending = 0
            drain(acc1, acc2, b1, b2)
    drain(acc1, acc2, b1, b2)


@helper
def _plane_sums(x, lo, hi, shift, weights, acc1, acc2):
    """As ``_blocked_sums`` for x (N, C, L), L > 1 (weights (N, L)): each plane's sums in
    float64."""
    for n in range(lo, hi):
        for c in range(x.shape[1]):
            plane = x[n, c]
            K = np.float64(shift[c])
            a = 0.0
            b = 0.0
            if weights is None:
                for i in range(plane.size):
                    d = plane[i] - K
                    a += d
                    b += d * d
            else:
                w = weights[n]
                for i in range(plane.size):
                    d = (plane[i] - K) * w[i]
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
    def channel_stats(x, centered, weights, count, nchunks):
        """Per-channel mean and biased variance of x (N, C, L) over its valid positions,
        float64 (C,) each; uncentred: mean 0 and var the mean square. weights (N, L) in x's
        dtype, 1 valid and 0 padding (None: all valid); count: valid positions (N * L)."""
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
                _blocked_sums(x2, lo, hi, shift, weights, s1[k], s2[k])
            else:
                _plane_sums(x, lo, hi, shift, weights, s1[k], s2[k])
        return _finish_moments(column_sums(s1), column_sums(s2), shift, count, centered)
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


@inlined
def _row_grad_input(g, row, out, mean_hi, mean_lo, scale, c1, c2, w):
    """One row of (N, C) data: out = (g - w * (c1 + (row - mean) * c2)) * scale; w is
    the row's weight (0 for padding: only the direct path), or None (valid)."""
    if w is None:
        for c in range(row.size):
            out[c] = (g[c] - c1[c] - ((row[c] - mean_hi[c]) - mean_lo[c]) * c2[c]) * scale[c]
    else:
        for c in range(row.size):
            out[c] = (g[c] - w * (c1[c] + ((row[c] - mean_hi[c]) - mean_lo[c]) * c2[c])) * scale[c]


@inlined
def _plane_grad_input(gp, plane, out, mh, ml, s, a, b, w):
    """One plane of (N, C, L) data: out = (g - w * (a + (plane - mean) * b)) * s; w the
    plane's weights (L,), or None (all valid)."""
    if w is None:
        for i in range(plane.size):
            out[i] = (gp[i] - a - ((plane[i] - mh) - ml) * b) * s
    else:
        for i in range(plane.size):
            out[i] = (gp[i] - w[i] * (a + ((plane[i] - mh) - ml) * b)) * s


def _grad_input(loop):
    def channel_grad_input(dy, x, mean_hi, mean_lo, scale, c1, c2, weights, dx, nchunks):
        """dx = (dy - w * (c1 + (x - mean) * c2)) * scale per channel; coefficients (C,) in
        x's dtype; w the weights (N, L) of the valid positions (None: all valid), so
        padding takes only the direct path."""
        N, C, L = x.shape
        x2, d2, o2 = x.reshape((N, C * L)), dy.reshape((N, C * L)), dx.reshape((N, C * L))
        for k in loop(nchunks):
            for n in range(k * N // nchunks, (k + 1) * N // nchunks):
                if L == 1:
                    w = None if weights is None else weights[n, 0]
                    _row_grad_input(d2[n], x2[n], o2[n], mean_hi, mean_lo, scale, c1, c2, w)
                else:
                    for c in range(C):
                        wn = None if weights is None else weights[n]
                        _plane_grad_input(dy[n, c], x[n, c], dx[n, c], mean_hi[c], mean_lo[c], scale[c], c1[c],
                                          c2[c], wn)
    return channel_grad_input




# The double backward (gradients of the training backward's dx, dgamma, dbeta): one pass
# of five per-channel sums, then one elementwise pass writing both input gradients from
# per-channel coefficients (``_norms.channel_double_coefficients`` holds the algebra).

DOUBLE_SUMS = 5  # sum(dy), sum(dy * (x - mean)), sum(a), sum(a * (x - mean)), sum(a * dy)


@helper
def _blocked_double_sums(d2, x2, a2, lo, hi, mean_hi, mean_lo, acc):
    """acc (5, C) += the double backward's sums over rows lo..hi-1 of (N, C) views: FLUSH
    rows at a time in x's dtype, then into the float64 acc."""
    C = mean_hi.size
    blk = np.zeros((DOUBLE_SUMS, C), dtype=x2.dtype)
    b0, b1, b2, b3, b4 = blk[0], blk[1], blk[2], blk[3], blk[4]
    pending = 0
    for n in range(lo, hi):
        g, row, av = d2[n], x2[n], a2[n]
        for c in range(C):
            xmu = (row[c] - mean_hi[c]) - mean_lo[c]
            b0[c] += g[c]
            b1[c] += g[c] * xmu
            b2[c] += av[c]
            b3[c] += av[c] * xmu
            b4[c] += av[c] * g[c]
        pending += 1
        if pending == FLUSH or n == hi - 1:
            pending = 0
            drain_rows(acc, blk)


@helper
def _plane_double_sums(dy, x, a, lo, hi, mean_hi, mean_lo, acc):
    """As ``_blocked_double_sums`` for (N, C, L) arrays, L > 1: float64 per plane."""
    for n in range(lo, hi):
        for c in range(x.shape[1]):
            gp, plane, ap = dy[n, c], x[n, c], a[n, c]
            mh, ml = mean_hi[c], mean_lo[c]
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            s4 = 0.0
            for i in range(plane.size):
                xmu = (plane[i] - mh) - ml
                s0 += gp[i]
                s1 += gp[i] * xmu
                s2 += ap[i]
                s3 += ap[i] * xmu
                s4 += ap[i] * gp[i]
            acc[0, c] += s0
            acc[1, c] += s1
            acc[2, c] += s2
            acc[3, c] += s3
            acc[4, c] += s4


def _double_sums(loop):
    def channel_double_sums(dy, x, a, mean_hi, mean_lo, nchunks):
        """Per-channel sum(dy), sum(dy * (x - mean)), sum(a), sum(a * (x - mean)) and
        sum(a * dy) over dy, x, a (N, C, L): (5, C) float64; a = the gradient of dx."""
        N, C, L = x.shape
        parts = np.zeros((nchunks, DOUBLE_SUMS * C))
        x2, d2, a2 = x.reshape((N, C * L)), dy.reshape((N, C * L)), a.reshape((N, C * L))
        for k in loop(nchunks):
            lo, hi = k * N // nchunks, (k + 1) * N // nchunks
            acc = parts[k].reshape((DOUBLE_SUMS, C))
            if L == 1:
                _blocked_double_sums(d2, x2, a2, lo, hi, mean_hi, mean_lo, acc)
            else:
                _plane_double_sums(dy, x, a, lo, hi, mean_hi, mean_lo, acc)
        return column_sums(parts).reshape((DOUBLE_SUMS, C))
    return channel_double_sums


@inlined
def _row_double_apply(g, row, av, out_dy, out_x, mean_hi, mean_lo, coefs):
    """One row of (N, C) data, per channel: out_dy = ca a + cx (x - mean) + c0,
    out_x = kdy dy + ka a + k1 (x - mean) + k0 (coefs rows: ca, cx, c0, kdy, ka, k1, k0)."""
    ca, cx, c0, kdy, ka, k1, k0 = coefs[0], coefs[1], coefs[2], coefs[3], coefs[4], coefs[5], coefs[6]
    for c in range(row.size):
        xmu = (row[c] - mean_hi[c]) - mean_lo[c]
        out_dy[c] = ca[c] * av[c] + cx[c] * xmu + c0[c]
        out_x[c] = kdy[c] * g[c] + ka[c] * av[c] + k1[c] * xmu + k0[c]


@inlined
def _plane_double_apply(gp, plane, ap, out_dy, out_x, mh, ml, ca, cx, c0, kdy, ka, k1, k0):
    """The same over one plane of (N, C, L) data, the coefficients its channel's."""
    for i in range(plane.size):
        xmu = (plane[i] - mh) - ml
        out_dy[i] = ca * ap[i] + cx * xmu + c0
        out_x[i] = kdy * gp[i] + ka * ap[i] + k1 * xmu + k0


def _double_apply(loop):
    def channel_double_apply(dy, x, a, mean_hi, mean_lo, coefs, ddy, dx, nchunks):
        """The double backward's input gradients: ddy (of dy) and dx (of x), (N, C, L), from
        coefs (7, C) in x's dtype (see ``_row_double_apply``)."""
        N, C, L = x.shape
        x2, d2, a2 = x.reshape((N, C * L)), dy.reshape((N, C * L)), a.reshape((N, C * L))
        e2, o2 = ddy.reshape((N, C * L)), dx.reshape((N, C * L))
        for k in loop(nchunks):
            for n in range(k * N // nchunks, (k + 1) * N // nchunks):
                if L == 1:
                    _row_double_apply(d2[n], x2[n], a2[n], e2[n], o2[n], mean_hi, mean_lo, coefs)
                else:
                    for c in range(C):
                        _plane_double_apply(dy[n, c], x[n, c], a[n, c], ddy[n, c], dx[n, c], mean_hi[c], mean_lo[c],
                                            coefs[0, c], coefs[1, c], coefs[2, c], coefs[3, c], coefs[4, c],
                                            coefs[5, c], coefs[6, c])
    return channel_double_apply


PARALLEL, SERIAL = variants({"channel_stats": _stats, "channel_affine": _affine,
                             "channel_grad_sums": _grad_sums, "channel_grad_input": _grad_input,
                             "channel_double_sums": _double_sums, "channel_double_apply": _double_apply})
