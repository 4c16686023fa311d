"""Numba kernels of the row family: statistics per sample (every norm whose spec has
``across="sample"``: layer, group, instance, RMS norm), x viewed as (R, K, L).

R rows of K channels of L values, every row contiguous; gamma and beta hold one value
per channel of a row's group: channel g * K + k for row r of group g = r % G. Rows
are split over ``nchunks`` chunks (rows ``ch * R // nchunks`` up to
``(ch + 1) * R // nchunks``); statistics are one pass of float64 sums shifted by the
row's first value (the error bound of ``_numba_channel``, with n the row's length;
uncentred: the mean square, mean 0). With L = 1 (features last: layer, RMS norm) the
loops run along the row; with L > 1 (group, instance norm) along each channel's L
values.

Elementwise work is in x's dtype, x - mean as (x - mean_hi) - mean_lo. The backward
recomputes xhat from x and the statistics; its dgamma/dbeta terms of up to FLUSH
rows (L = 1) are added in x's dtype before they join float64 partial sums.
"""

from __future__ import annotations

import numpy as np

from ._numba_base import FLUSH, column_sums, drain, helper, inlined, variants


@helper
def _row_moments(row, centered):
    """(mean, biased var) of a contiguous row in float64, one pass of sums shifted by the
    row's first value; uncentred: (0, mean of squares)."""
    n = row.size
    K = np.float64(row[0]) if centered else 0.0
    s1 = 0.0
    s2 = 0.0
    for i in range(n):
        d = row[i] - K
        s1 += d
        s2 += d * d
    m = s1 / n
    if not centered:
        return 0.0, s2 / n
    return K + m, max(s2 / n - m * m, 0.0)


@helper
def _masked_row_moments(xr, w, centered):
    """(mean, biased var) in float64 of the valid positions of one row xr (K, L), w (L,)
    the positions' weights (1 valid, 0 padding), shared by the row's K channels; one
    pass shifted by the row's first value; uncentred: (0, mean of squares)."""
    K0 = np.float64(xr[0, 0]) if centered else 0.0
    s1 = 0.0
    s2 = 0.0
    for k in range(xr.shape[0]):
        plane = xr[k]
        for i in range(plane.size):
            d = (plane[i] - K0) * w[i]
            s1 += d
            s2 += d * d
    n = xr.shape[0] * w.sum()
    m = s1 / n
    if not centered:
        return 0.0, s2 / n
    return K0 + m, max(s2 / n - m * m, 0.0)


@inlined
def _in_dtype(values, buf):
    """The float64 (mean, invstd, ...) of a row as x-dtype scalars: buf[0] = mean_hi,
    buf[1] = mean_lo (the rounding error of mean_hi), then the others."""
    buf[0] = values[0]
    buf[1] = values[0] - buf[0]
    for i in range(1, values.size):
        buf[i + 1] = values[i]


@inlined
def _flat_affine(row, out, mh, ml, invstd, gamma, beta):
    """out = ((row - mh) - ml) * invstd * gamma + beta over one contiguous row (L = 1)."""
    for i in range(row.size):
        out[i] = ((row[i] - mh) - ml) * (invstd * gamma[i]) + beta[i]


@inlined
def _plane_affine(xr, yr, mh, ml, invstd, gamma, beta):
    """The same over one row of (K, L) planes, channel k scaled by gamma[k], shifted by
    beta[k]: plane by plane (loops over whole contiguous views vectorize, index ranges did not)."""
    for k in range(xr.shape[0]):
        s = invstd * gamma[k]
        b = beta[k]
        plane, out_plane = xr[k], yr[k]
        for i in range(plane.size):
            out_plane[i] = ((plane[i] - mh) - ml) * s + b


def _forward(loop):
    def row_forward(x, gamma, beta, G, eps, centered, weights, y, mean, var, invstd, nchunks):
        """Statistics of each row of x (R, K, L) and y = xhat * gamma + beta per channel.

        gamma, beta: (G*K,) in x's dtype; weights (R // G, L) in x's dtype, 1 for a valid
        position of sample r // G and 0 for padding (None: all valid; L > 1 only): the
        statistics are over the valid positions, every position is normalized. Writes y
        and mean, var, invstd (R,) in float64.
        """
        R, K, L = x.shape
        x2, y2 = x.reshape((R, K * L)), y.reshape((R, K * L))
        for ch in loop(nchunks):
            stats = np.empty(2)
            buf = np.empty(3, dtype=x.dtype)
            for r in range(ch * R // nchunks, (ch + 1) * R // nchunks):
                if weights is None:
                    m, v = _row_moments(x2[r], centered)
                else:
                    m, v = _masked_row_moments(x[r], weights[r // G], centered)
                mean[r], var[r] = m, v
                invstd[r] = 1.0 / np.sqrt(v + eps)
                stats[0], stats[1] = m, invstd[r]
                _in_dtype(stats, buf)
                g0 = 0 if G == 1 else (r % G) * K  # layer norm: no integer division per row
                if L == 1:
                    _flat_affine(x2[r], y2[r], buf[0], buf[1], buf[2], gamma[g0:g0 + K], beta[g0:g0 + K])
                else:
                    _plane_affine(x[r], y[r], buf[0], buf[1], buf[2], gamma[g0:g0 + K], beta[g0:g0 + K])
    return row_forward


@inlined
def _flat_row_sums(g, row, gamma, mh, ml, invstd, blk_g, blk_b):
    """One contiguous row of L = 1 data: blk_b += dy, blk_g += dy * xhat (x's dtype);
    returns float64 sum(gamma * dy) and sum(gamma * dy * xhat) over the row."""
    a = 0.0
    b = 0.0
    for i in range(row.size):
        xh = ((row[i] - mh) - ml) * invstd
        d = g[i]
        blk_b[i] += d
        blk_g[i] += d * xh
        gd = gamma[i] * d
        a += gd
        b += gd * xh
    return a, b


@inlined
def _plane_row_sums(g, x, gamma, mh, ml, invstd, acc_g, acc_b):
    """One row of (K, L) planes, L > 1: acc_b[k] += sum(dy), acc_g[k] += sum(dy * xhat)
    per plane in float64; returns sum(gamma * dy) and sum(gamma * dy * xhat)."""
    a = 0.0
    b = 0.0
    for k in range(x.shape[0]):
        gp, plane = g[k], x[k]
        sg = 0.0
        sgx = 0.0
        for i in range(plane.size):
            sg += gp[i]
            sgx += gp[i] * (((plane[i] - mh) - ml) * invstd)
        acc_b[k] += sg
        acc_g[k] += sgx
        a += gamma[k] * sg
        b += gamma[k] * sgx
    return a, b


@inlined
def _flat_grad_input(g, row, out, gamma, mh, ml, invstd, am, bm):
    """out = invstd * (gamma * dy - am - xhat * bm) over one contiguous row (L = 1)."""
    for i in range(row.size):
        xh = ((row[i] - mh) - ml) * invstd
        out[i] = invstd * (gamma[i] * g[i] - am - xh * bm)


@inlined
def _plane_grad_input(gr, xr, dxr, gamma, mh, ml, invstd, am, bm, w):
    """The same over one row of (K, L) planes, channel k scaled by gamma[k]; w the
    positions' weights (L,) (None: all valid): padding takes only the direct path."""
    for k in range(xr.shape[0]):
        gk = gamma[k]
        gp, plane, out = gr[k], xr[k], dxr[k]
        if w is None:
            for i in range(plane.size):
                xh = ((plane[i] - mh) - ml) * invstd
                out[i] = invstd * (gk * gp[i] - am - xh * bm)
        else:
            for i in range(plane.size):
                xh = ((plane[i] - mh) - ml) * invstd
                out[i] = invstd * (gk * gp[i] - w[i] * (am + xh * bm))


def _backward(loop):
    def row_backward(dy, x, gamma, G, centered, weights, mean, invstd, dx, nchunks):
        """dx (into ``dx``) and dgamma, dbeta (G*K,) float64 of ``row_forward``; gamma in
        x's dtype; weights as there (the sums run over every position, the mean and
        variance paths reach the valid ones)."""
        R, K, L = x.shape
        P = G * K
        x2, d2, o2 = x.reshape((R, K * L)), dy.reshape((R, K * L)), dx.reshape((R, K * L))
        pg = np.zeros((nchunks, P))
        pb = np.zeros((nchunks, P))
        for ch in loop(nchunks):
            blk_g = np.zeros(P, dtype=x.dtype)
            blk_b = np.zeros(P, dtype=x.dtype)
            stats = np.empty(4)
            buf = np.empty(5, dtype=x.dtype)  # mean_hi, mean_lo, invstd, mean path, variance path
            lo, hi = ch * R // nchunks, (ch + 1) * R // nchunks
            for r in range(lo, hi):
                g0 = 0 if G == 1 else (r % G) * K
                stats[0], stats[1] = mean[r], invstd[r]
                _in_dtype(stats[:2], buf)
                if L == 1:
                    a, b = _flat_row_sums(d2[r], x2[r], gamma[g0:g0 + K], buf[0], buf[1], buf[2],
                                          blk_g[g0:g0 + K], blk_b[g0:g0 + K])
                    if (r - lo) % FLUSH == FLUSH - 1 or r == hi - 1:
                        drain(pg[ch], pb[ch], blk_g, blk_b)
                else:
                    a, b = _plane_row_sums(dy[r], x[r], gamma[g0:g0 + K], buf[0], buf[1], buf[2],
                                           pg[ch, g0:g0 + K], pb[ch, g0:g0 + K])
                n = K * L if weights is None else K * weights[r // G].sum()
                stats[2], stats[3] = (a / n if centered else 0.0), b / n
                _in_dtype(stats, buf)
                if L == 1:
                    _flat_grad_input(d2[r], x2[r], o2[r], gamma[g0:g0 + K], buf[0], buf[1], buf[2], buf[3], buf[4])
                else:
                    w = None if weights is None else weights[r // G]
                    _plane_grad_input(dy[r], x[r], dx[r], gamma[g0:g0 + K], buf[0], buf[1], buf[2], buf[3], buf[4],
                                      w)
        return column_sums(pg), column_sums(pb)
    return row_backward


PARALLEL, SERIAL = variants({"row_forward": _forward, "row_backward": _backward})
