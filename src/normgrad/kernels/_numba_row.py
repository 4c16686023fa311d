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

from ._numba_base import FLUSH, column_sums, drain, drain_rows, helper, inlined, variants


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


# The double backward (gradients of the training backward's dx, dgamma, dbeta), per row:
# one pass of seven float64 sums, the row's coefficients, one elementwise pass writing
# both input gradients and adding dgamma's terms. With g = gamma * dy, a = the gradient
# of dx, ga and gb those of dgamma and dbeta (per channel), P(v) = v - <v> - xhat <v xhat>
# over the row (uncentred: no <v>), and h = ga dy - invstd (a <g xhat> + g <a xhat>):
#   grad of dy:    gamma invstd P(a) + ga xhat + gb
#   grad of x:     invstd P(h) - invstd**2 xhat <a P(g)>
#   grad of gamma: sum over rows of dy invstd P(a)


@inlined
def _flat_double_sums(g, row, av, gamma, ga, mh, ml, invstd, sums):
    """sums (7,) = float64 sums over one contiguous row (L = 1) of g, g xhat, a, a xhat,
    a g, ga dy and ga dy xhat, g = gamma * dy."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    s4 = 0.0
    s5 = 0.0
    s6 = 0.0
    for i in range(row.size):
        xh = ((row[i] - mh) - ml) * invstd
        gi = gamma[i] * g[i]
        qi = ga[i] * g[i]
        s0 += gi
        s1 += gi * xh
        s2 += av[i]
        s3 += av[i] * xh
        s4 += av[i] * gi
        s5 += qi
        s6 += qi * xh
    sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], sums[6] = s0, s1, s2, s3, s4, s5, s6


@inlined
def _plane_double_sums(gr, xr, ar, gamma, ga, mh, ml, invstd, sums):
    """The same over one row of (K, L) planes, L > 1: per plane in float64, then scaled
    by the plane's gamma and ga."""
    for j in range(7):
        sums[j] = 0.0
    for k in range(xr.shape[0]):
        gp, plane, ap = gr[k], xr[k], ar[k]
        d = 0.0
        dx = 0.0
        sa = 0.0
        sax = 0.0
        sad = 0.0
        for i in range(plane.size):
            xh = ((plane[i] - mh) - ml) * invstd
            d += gp[i]
            dx += gp[i] * xh
            sa += ap[i]
            sax += ap[i] * xh
            sad += ap[i] * gp[i]
        gk, qk = np.float64(gamma[k]), np.float64(ga[k])
        sums[0] += gk * d
        sums[1] += gk * dx
        sums[2] += sa
        sums[3] += sax
        sums[4] += gk * sad
        sums[5] += qk * d
        sums[6] += qk * dx


@helper
def _row_double_coefficients(sums, n, mean, invstd, centered, out):
    """out (8,) float64 = mean, invstd and the row's coefficients rmA = invstd <a>,
    rmAX = invstd <a xhat>, r2mAX = invstd**2 <a xhat>, r2mGX = invstd**2 <g xhat>,
    rhm = invstd <h>, k1 = invstd <h xhat> + invstd**2 <a P(g)>, from the row's sums of n values."""
    r = invstd
    mA = sums[2] / n if centered else 0.0
    mG = sums[0] / n if centered else 0.0
    mAX = sums[3] / n
    mGX = sums[1] / n
    apg = sums[4] / n - mA * mG - mAX * mGX
    hm = sums[5] / n - r * (mA * mGX + mG * mAX) if centered else 0.0
    hx = sums[6] / n - 2.0 * r * mAX * mGX
    out[0], out[1], out[2], out[3] = mean, r, r * mA, r * mAX
    out[4], out[5], out[6], out[7] = r * r * mAX, r * r * mGX, r * hm, r * hx + r * r * apg


@inlined
def _flat_double_apply(g, row, av, out_dy, out_x, gamma, ga, gb, blk, c):
    """One contiguous row (L = 1): out_dy, out_x (the gradients of dy and x) and blk +=
    dgamma's terms (x's dtype); c the row's coefficients in x's dtype (``_in_dtype`` of
    ``_row_double_coefficients``): mean_hi, mean_lo, invstd, rmA, rmAX, r2mAX, r2mGX, rhm, k1."""
    mh, ml, r, rmA, rmAX, r2mAX, r2mGX, rhm, k1 = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
    for i in range(row.size):
        xh = ((row[i] - mh) - ml) * r
        gk = gamma[i]
        out_dy[i] = gk * r * av[i] + (ga[i] - gk * rmAX) * xh + (gb[i] - gk * rmA)
        out_x[i] = (r * ga[i] - gk * r2mAX) * g[i] - r2mGX * av[i] - rhm - xh * k1
        blk[i] += g[i] * (r * av[i] - rmA - xh * rmAX)


@inlined
def _plane_double_apply(gr, xr, ar, er, dxr, gamma, ga, gb, acc, c):
    """The same over one row of (K, L) planes; acc[k] += dgamma's terms in float64."""
    mh, ml, r, rmA, rmAX, r2mAX, r2mGX, rhm, k1 = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
    for k in range(xr.shape[0]):
        gk = gamma[k]
        ca, cx, c0 = gk * r, ga[k] - gk * rmAX, gb[k] - gk * rmA
        kdy = r * ga[k] - gk * r2mAX
        gp, plane, ap, out_dy, out_x = gr[k], xr[k], ar[k], er[k], dxr[k]
        s = 0.0
        for i in range(plane.size):
            xh = ((plane[i] - mh) - ml) * r
            out_dy[i] = ca * ap[i] + cx * xh + c0
            out_x[i] = kdy * gp[i] - r2mGX * ap[i] - rhm - xh * k1
            s += gp[i] * (r * ap[i] - rmA - xh * rmAX)
        acc[k] += s


def _double_backward(loop):
    def row_double_backward(dy, x, a, gamma, ga, gb, G, centered, mean, invstd, ddy, dx, nchunks):
        """The gradients of ``row_backward``'s (dx, dgamma, dbeta) given theirs: a (R, K, L)
        and ga, gb (G*K,) (all in x's dtype, as gamma). Writes ddy (of dy) and dx (of x),
        returns dgamma (G*K,) float64 (of gamma)."""
        R, K, L = x.shape
        P = G * K
        x2, d2, a2 = x.reshape((R, K * L)), dy.reshape((R, K * L)), a.reshape((R, K * L))
        e2, o2 = ddy.reshape((R, K * L)), dx.reshape((R, K * L))
        parts = np.zeros((nchunks, P))
        for ch in loop(nchunks):
            blk = np.zeros((1, P), dtype=x.dtype)
            sums = np.empty(7)
            coefs = np.empty(8)
            buf = np.empty(9, dtype=x.dtype)
            lo, hi = ch * R // nchunks, (ch + 1) * R // nchunks
            for r in range(lo, hi):
                g0 = 0 if G == 1 else (r % G) * K
                gam, q, b = gamma[g0:g0 + K], ga[g0:g0 + K], gb[g0:g0 + K]
                coefs[0], coefs[1] = mean[r], invstd[r]
                _in_dtype(coefs[:2], buf)
                if L == 1:
                    _flat_double_sums(d2[r], x2[r], a2[r], gam, q, buf[0], buf[1], buf[2], sums)
                else:
                    _plane_double_sums(dy[r], x[r], a[r], gam, q, buf[0], buf[1], buf[2], sums)
                _row_double_coefficients(sums, K * L, mean[r], invstd[r], centered, coefs)
                _in_dtype(coefs, buf)
                if L == 1:
                    _flat_double_apply(d2[r], x2[r], a2[r], e2[r], o2[r], gam, q, b, blk[0, g0:g0 + K], buf)
                    if (r - lo) % FLUSH == FLUSH - 1 or r == hi - 1:
                        drain_rows(parts[ch:ch + 1], blk)
                else:
                    _plane_double_apply(dy[r], x[r], a[r], ddy[r], dx[r], gam, q, b, parts[ch, g0:g0 + K], buf)
        return column_sums(parts)
    return row_double_backward


PARALLEL, SERIAL = variants({"row_forward": _forward, "row_backward": _backward,
                             "row_double_backward": _double_backward})
