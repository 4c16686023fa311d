"""Fused Numba kernels. Imported only when Numba is installed (see __init__.py); each is
compiled on its first call (and cached on disk), not at import, in two variants:
``PARALLEL[name]`` (threads over a fixed number of chunks) and ``SERIAL[name]`` (the
same code on the calling thread, for small calls). Both add the same partial sums in
the same order, so results do not depend on the variant or the thread count.

Two families cover every norm; every array is C-contiguous.

- channel (statistics across the batch: batch norm), x viewed as (N, C, L). Work is
  split over chunks of N; each chunk keeps per-channel float64 partial sums, added at
  the end. With L = 1 ((N, C) data) the inner loops run along C, with L > 1
  (N, C, *spatial) along L: both contiguous, both vectorize.
  Statistics are one pass over x: float64 sums of d = x - K and d**2, shifted by K =
  the channel's first value; var = S2/n - (S1/n)**2. With float64 accumulation of n
  values the absolute error of var is at most about n * 2**-52 * (var + (mean - K)**2):
  the shift keeps (mean - K)**2 of the order of var unless the first value is an
  extreme outlier, so float32 data with mean 1e4 and std 1 keeps its variance to
  about 1e-11 relative at n = 65536.
- row (statistics per sample: layer, group, instance, RMS norm), x viewed as
  (R, K, L): R rows of K channels of L values, every row contiguous; gamma and beta
  hold one value per channel of a row's group, channel g * K + k for row r of group
  g = r % G. Rows are processed in parallel; statistics are one pass of float64 sums
  shifted by the row's first value (the bound above, with n the row's length). With L = 1 (features last: layer, RMS norm) the loops run
  along the row; with L > 1 (group, instance norm) along each channel's L values.

Elementwise work is done in x's dtype: float32 stays float32, at twice the SIMD width.
x - mean is computed as (x - mean_hi) - mean_lo, the float64 mean split into two
values of x's dtype, so it is as exact as in float64 (x - mean_hi is exact when they
are close); per-channel and per-row coefficients come from float64. The forward writes
only y; the backward recomputes xhat from x and the statistics, so no array of x's
size is kept between them.
"""

from __future__ import annotations

import types

import numpy as np
from numba import njit, prange

# reassoc lets float sums vectorize (their order changes, not their precision);
# no flags that assume away NaN/Inf or change rounding of single operations.
_FLAGS = {"reassoc", "contract"}
FLUSH = 32  # rows whose gradient-sum terms are added in x's dtype before they join the float64 totals


@njit(cache=True, nogil=True, fastmath=_FLAGS)
def _drain(total1, total2, block1, block2):
    """total1 += block1, total2 += block2 (float64 totals), then zero the blocks."""
    for j in range(total1.size):
        total1[j] += block1[j]
        total2[j] += block2[j]
        block1[j] = 0.0
        block2[j] = 0.0


# ----------------------------------------------------------------------------- channel family

def channel_stats(x, nchunks):
    """Per-channel mean and biased variance of x (N, C, L), float64, one shifted pass.

    With L = 1, d = x - K and d**2 of up to FLUSH rows are added in x's dtype before they
    join the float64 sums (float32: at most FLUSH * 2**-24 of the terms' magnitude more)."""
    N, C, L = x.shape
    s1 = np.zeros((nchunks, C))
    s2 = np.zeros((nchunks, C))
    shift = np.empty(C)
    for c in range(C):
        shift[c] = x[0, c, 0]
    shift_x = np.empty(C, dtype=x.dtype)
    for c in range(C):
        shift_x[c] = x[0, c, 0]
    x2 = x.reshape((N, C * L))  # rows of a C-contiguous 2-D view vectorize; x[n, :, 0] does not
    for k in prange(nchunks):
        a1 = s1[k]
        a2 = s2[k]
        b1 = np.zeros(C, dtype=x.dtype)
        b2 = np.zeros(C, dtype=x.dtype)
        pending = 0
        last = (k + 1) * N // nchunks
        for n in range(k * N // nchunks, last):
            if L == 1:
                row = x2[n]
                for c in range(C):
                    d = row[c] - shift_x[c]
                    b1[c] += d
                    b2[c] += d * d
                pending += 1
                if pending == FLUSH or n == last - 1:
                    pending = 0
                    _drain(a1, a2, b1, b2)
            else:
                for c in range(C):
                    plane = x[n, c]
                    K = shift[c]
                    a = 0.0
                    b = 0.0
                    for i in range(L):
                        d = plane[i] - K
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


def channel_affine(x, mean_hi, mean_lo, scale, shift, y, nchunks):
    """y = ((x - mean_hi) - mean_lo) * scale + shift per channel; coefficients (C,) in x's dtype."""
    N, C, L = x.shape
    x2, y2 = x.reshape((N, C * L)), y.reshape((N, C * L))
    for k in prange(nchunks):
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
                    mh = mean_hi[c]
                    ml = mean_lo[c]
                    s = scale[c]
                    b = shift[c]
                    for i in range(L):
                        out[i] = ((plane[i] - mh) - ml) * s + b


def channel_grad_sums(dy, x, mean_hi, mean_lo, nchunks):
    """Per-channel sum(dy) and sum(dy * (x - mean)) over x (N, C, L), float64.

    With L = 1 the terms of up to FLUSH rows are added in x's dtype (vector-wide) before
    they join the float64 partial sums: a float32 rounding error of at most FLUSH * 2**-24
    of the terms' magnitude.
    """
    N, C, L = x.shape
    p1 = np.zeros((nchunks, C))
    p2 = np.zeros((nchunks, C))
    x2, d2 = x.reshape((N, C * L)), dy.reshape((N, C * L))
    for k in prange(nchunks):
        a1 = p1[k]
        a2 = p2[k]
        b1 = np.zeros(C, dtype=x.dtype)
        b2 = np.zeros(C, dtype=x.dtype)
        pending = 0
        last = (k + 1) * N // nchunks
        for n in range(k * N // nchunks, last):
            if L == 1:
                g = d2[n]
                row = x2[n]
                for c in range(C):
                    d = g[c]
                    b1[c] += d
                    b2[c] += d * ((row[c] - mean_hi[c]) - mean_lo[c])
                pending += 1
                if pending == FLUSH or n == last - 1:
                    pending = 0
                    _drain(a1, a2, b1, b2)
            else:
                for c in range(C):
                    gp = dy[n, c]
                    plane = x[n, c]
                    mh = mean_hi[c]
                    ml = mean_lo[c]
                    a = 0.0
                    b = 0.0
                    for i in range(L):
                        d = gp[i]
                        a += d
                        b += d * ((plane[i] - mh) - ml)
                    a1[c] += a
                    a2[c] += b
    t1 = np.zeros(C)
    t2 = np.zeros(C)
    for c in range(C):
        for k in range(nchunks):
            t1[c] += p1[k, c]
            t2[c] += p2[k, c]
    return t1, t2


def channel_grad_input(dy, x, mean_hi, mean_lo, scale, c1, c2, dx, nchunks):
    """dx = (dy - c1 - (x - mean) * c2) * scale per channel; coefficients (C,) in x's dtype."""
    N, C, L = x.shape
    x2, d2, o2 = x.reshape((N, C * L)), dy.reshape((N, C * L)), dx.reshape((N, C * L))
    for k in prange(nchunks):
        for n in range(k * N // nchunks, (k + 1) * N // nchunks):
            if L == 1:
                g = d2[n]
                row = x2[n]
                out = o2[n]
                for c in range(C):
                    out[c] = (g[c] - c1[c] - ((row[c] - mean_hi[c]) - mean_lo[c]) * c2[c]) * scale[c]
            else:
                for c in range(C):
                    gp = dy[n, c]
                    plane = x[n, c]
                    out = dx[n, c]
                    mh = mean_hi[c]
                    ml = mean_lo[c]
                    s = scale[c]
                    a = c1[c]
                    b = c2[c]
                    for i in range(L):
                        out[i] = (gp[i] - a - ((plane[i] - mh) - ml) * b) * s


def channel_forward(x, gamma, beta, eps, y, nchunks):
    """Training forward in one call: batch statistics, then y; gamma, beta (C,) float64.
    Returns mean, var, invstd (C,) float64."""
    mean, var = _stats(x, nchunks)
    C = mean.shape[0]
    invstd = np.empty(C)
    coef = np.empty((4, C), dtype=x.dtype)  # mean_hi, mean_lo, scale, shift in x's dtype
    for c in range(C):
        invstd[c] = 1.0 / np.sqrt(var[c] + eps)
        coef[0, c] = mean[c]
        coef[1, c] = mean[c] - coef[0, c]
        coef[2, c] = invstd[c] * gamma[c]
        coef[3, c] = beta[c]
    _affine(x, coef[0], coef[1], coef[2], coef[3], y, nchunks)
    return mean, var, invstd


def channel_backward(dy, x, gamma, mean, invstd, batch_stats, dx, nchunks):
    """dx (into ``dx``), dgamma, dbeta (C,) float64 of batch norm in one call; with
    batch_stats False the statistics were constants (evaluation mode)."""
    C = mean.shape[0]
    count = x.size // C
    coef = np.empty((5, C), dtype=x.dtype)  # mean_hi, mean_lo, scale, c1, c2
    for c in range(C):
        coef[0, c] = mean[c]
        coef[1, c] = mean[c] - coef[0, c]
    sum_dy, sum_dy_xmu = _grad_sums(dy, x, coef[0], coef[1], nchunks)
    dgamma = np.empty(C)
    for c in range(C):
        dgamma[c] = sum_dy_xmu[c] * invstd[c]
        coef[2, c] = gamma[c] * invstd[c]
        coef[3, c] = sum_dy[c] / count if batch_stats else 0.0
        coef[4, c] = sum_dy_xmu[c] * invstd[c] * invstd[c] / count if batch_stats else 0.0
    _grad_input(dy, x, coef[0], coef[1], coef[2], coef[3], coef[4], dx, nchunks)
    return dgamma, sum_dy


# ----------------------------------------------------------------------------- row family

@njit(cache=True, nogil=True, fastmath=_FLAGS)
def _row_moments(row, centered):
    """(mean, biased var) of a contiguous row in float64, one pass of sums shifted by the
    row's first value (the bound of the module docstring); uncentred: (0, mean of squares)."""
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


@njit(cache=True, nogil=True, fastmath=_FLAGS)
def _plane_sums(g, plane, mh, ml, iv):
    """sum(g) and sum(g * xhat) over one contiguous plane, xhat = ((plane - mh) - ml) * iv:
    each term in x's dtype, the sums in float64."""
    a = 0.0
    b = 0.0
    for i in range(plane.size):
        d = g[i]
        a += d
        b += d * (((plane[i] - mh) - ml) * iv)
    return a, b


def row_forward(x, gamma, beta, G, eps, centered, y, mean, var, invstd, nchunks):
    """Statistics of each row of x (R, K, L) and y = xhat * gamma + beta per channel.

    gamma, beta: (G*K,) in x's dtype. Writes y and mean, var, invstd (R,) in float64.
    """
    R, K, L = x.shape
    n = K * L
    x2 = x.reshape((R, n))
    y2 = y.reshape((R, n))
    for ch in prange(nchunks):
        pieces = np.empty(3, dtype=x.dtype)  # mean_hi, mean_lo, invstd in x's dtype
        for r in range(ch * R // nchunks, (ch + 1) * R // nchunks):
            row = x2[r]
            out = y2[r]
            m, v = _row_moments(row, centered)
            inv = 1.0 / np.sqrt(v + eps)
            mean[r] = m
            var[r] = v
            invstd[r] = inv
            pieces[0] = m
            pieces[1] = m - pieces[0]
            pieces[2] = inv
            mh = pieces[0]
            ml = pieces[1]
            iv = pieces[2]
            g0 = 0 if G == 1 else (r % G) * K  # layer norm: no integer division per row
            if L == 1:
                gr = gamma[g0:g0 + n]
                br = beta[g0:g0 + n]
                for i in range(n):
                    out[i] = ((row[i] - mh) - ml) * (iv * gr[i]) + br[i]
            else:  # plane by plane: loops over whole contiguous views vectorize, index ranges did not
                for k in range(K):
                    s = iv * gamma[g0 + k]
                    b = beta[g0 + k]
                    plane = x[r, k]
                    out_plane = y[r, k]
                    for i in range(L):
                        out_plane[i] = ((plane[i] - mh) - ml) * s + b


def row_backward(dy, x, gamma, G, centered, mean, invstd, dx, nchunks):
    """dx (into ``dx``) and dgamma, dbeta (G*K,) float64 of ``row_forward``; gamma in x's dtype.

    With L = 1, the dgamma/dbeta terms of up to FLUSH rows are added in x's dtype
    (vector-wide), then into float64 partial sums: a float32 rounding error of at most
    FLUSH * 2**-24 of the terms' magnitude.
    """
    R, K, L = x.shape
    n = K * L
    x2 = x.reshape((R, n))
    d2 = dy.reshape((R, n))
    o2 = dx.reshape((R, n))
    P = G * K
    pg = np.zeros((nchunks, P))
    pb = np.zeros((nchunks, P))
    for ch in prange(nchunks):
        acc_g = pg[ch]
        acc_b = pb[ch]
        blk_g = np.zeros(P, dtype=x.dtype)
        blk_b = np.zeros(P, dtype=x.dtype)
        pieces = np.empty(5, dtype=x.dtype)
        last = (ch + 1) * R // nchunks
        pending = 0
        for r in range(ch * R // nchunks, last):
            row = x2[r]
            grow = d2[r]
            out = o2[r]
            m = mean[r]
            pieces[0] = m
            pieces[1] = m - pieces[0]
            pieces[2] = invstd[r]
            mh = pieces[0]
            ml = pieces[1]
            iv = pieces[2]
            g0 = 0 if G == 1 else (r % G) * K  # layer norm: no integer division per row
            a = 0.0  # sum of dxhat
            b = 0.0  # sum of dxhat * xhat
            if L == 1:
                gr = gamma[g0:g0 + n]
                bg = blk_g[g0:g0 + n]
                bb = blk_b[g0:g0 + n]
                for i in range(n):
                    xh = ((row[i] - mh) - ml) * iv
                    d = grow[i]
                    bb[i] += d
                    bg[i] += d * xh
                    gd = gr[i] * d
                    a += gd
                    b += gd * xh
                pending += 1
                if pending == FLUSH or r == last - 1:
                    pending = 0
                    _drain(acc_g, acc_b, blk_g, blk_b)
            else:
                for k in range(K):
                    sg, sgx = _plane_sums(dy[r, k], x[r, k], mh, ml, iv)
                    acc_b[g0 + k] += sg
                    acc_g[g0 + k] += sgx
                    a += gamma[g0 + k] * sg
                    b += gamma[g0 + k] * sgx
            pieces[3] = a / n if centered else 0.0
            pieces[4] = b / n
            am = pieces[3]
            bm = pieces[4]
            if L == 1:
                gr = gamma[g0:g0 + n]
                for i in range(n):
                    xh = ((row[i] - mh) - ml) * iv
                    out[i] = iv * (gr[i] * grow[i] - am - xh * bm)
            else:
                for k in range(K):
                    gk = gamma[g0 + k]
                    plane = x[r, k]
                    g_plane = dy[r, k]
                    out_plane = dx[r, k]
                    for i in range(L):
                        xh = ((plane[i] - mh) - ml) * iv
                        out_plane[i] = iv * (gk * g_plane[i] - am - xh * bm)
    dgamma = np.zeros(P)
    dbeta = np.zeros(P)
    for j in range(P):
        for ch in range(nchunks):
            dgamma[j] += pg[ch, j]
            dbeta[j] += pb[ch, j]
    return dgamma, dbeta


# ----------------------------------------------------------------------------- optimizer

@njit(cache=True, nogil=True, fastmath=_FLAGS)
def adam_step(w, dw, m, v, beta1, beta2, epsilon, step, vscale, tiny, next_w, next_m, next_v):
    """One Adam update in one pass (flat arrays of one dtype; scalars in that dtype, so
    float32 stays float32 as in NumPy): m' = beta1 m + (1 - beta1) dw, v' likewise with
    dw**2, w' = w - step * m' / (sqrt(v' * vscale) + epsilon), step = lr / (1 - beta1**t),
    vscale = 1 / (1 - beta2**t).

    Moments below ``tiny`` (the dtype's smallest normal number) are stored as 0: a unit
    whose gradient stays 0 would otherwise keep m' = beta1 * m at the smallest subnormal
    forever (it rounds back to itself), and subnormal arithmetic is ~100x slower on x86."""
    one = beta1 / beta1
    zero = one - one
    for i in range(w.size):
        g = dw[i]
        mi = beta1 * m[i] + (one - beta1) * g
        vi = beta2 * v[i] + (one - beta2) * (g * g)
        if abs(mi) < tiny:
            mi = zero
        if vi < tiny:
            vi = zero
        next_m[i] = mi
        next_v[i] = vi
        next_w[i] = w[i] - step * mi / (np.sqrt(vi * vscale) + epsilon)


def _variant(f, suffix: str, parts: dict):
    """A copy of ``f`` named ``f.__name__ + suffix`` whose calls to the building blocks
    (_stats, _affine, ...) go to ``parts``. Numba's disk cache keys compiled code by the
    function's name, not by its parallel flag, so the two variants need two names."""
    g = types.FunctionType(f.__code__, {**f.__globals__, **parts}, f.__name__ + suffix, f.__defaults__,
                           f.__closure__)
    g.__qualname__ = f.__qualname__ + suffix
    return g


_BLOCKS = (channel_stats, channel_affine, channel_grad_sums, channel_grad_input, row_forward, row_backward)
_COMPOSED = (channel_forward, channel_backward)


def _build(parallel: bool, suffix: str) -> dict:
    jit = njit(parallel=parallel, cache=True, nogil=True, fastmath=_FLAGS)
    kernels = {f.__name__: jit(_variant(f, suffix, {})) for f in _BLOCKS}
    parts = {"_stats": kernels["channel_stats"], "_affine": kernels["channel_affine"],
             "_grad_sums": kernels["channel_grad_sums"], "_grad_input": kernels["channel_grad_input"]}
    compose = njit(cache=True, nogil=True, fastmath=_FLAGS)
    kernels.update({f.__name__: compose(_variant(f, suffix, parts)) for f in _COMPOSED})
    return kernels


PARALLEL = _build(True, "")
SERIAL = _build(False, "_serial")
