"""The statistics behind every norm, in NumPy: moments, centring, merging, the closed-form backward.

Batch, layer, group and instance normalization are the same computation over
different axes of one view of x (``specs``; Flax's ``_compute_stats`` /
``_normalize`` idea): this module holds it once. ``normgrad.functional`` and the
NumPy path of ``normgrad.kernels`` use it; the Numba kernels state their own
accumulation scheme in ``kernels/_numba.py``.

Numerics. The mean is accumulated in float64, then subtracted in two float32
pieces (``hi + lo``) so that even float32 data with a mean of 1e4 and a standard
deviation of 1 is centred to full float32 precision. The variance is the
*corrected two-pass* formula (Chan, Golub & LeVeque 1983) over the centred
values, again accumulated in float64: never E[x^2] - E[x]^2.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

Axes = tuple[int, ...]


class NormStats(NamedTuple):
    """The statistics a norm used, float64, all of one shape ((C,) across the
    batch, (N, G) per sample): mean, biased var, and invstd = 1 / sqrt(var + eps)."""

    mean: np.ndarray
    var: np.ndarray
    invstd: np.ndarray

    @classmethod
    def of(cls, mean, var, eps: float) -> "NormStats":
        mean, var = np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64)
        return cls(mean, var, 1.0 / np.sqrt(var + eps))


def split_mean(mean: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """The float64 ``mean`` as hi + lo, both in ``dtype``: hi is the mean rounded to
    ``dtype``, lo the rounding error. x - hi is exact when x is near the mean, so
    (x - hi) - lo is x - mean to the precision of the result."""
    hi = mean.astype(dtype)
    return hi, (mean - hi).astype(dtype)


def center(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """x - mean in x's dtype, with the float64 ``mean`` applied in two pieces
    (``split_mean``), as accurate as if the subtraction were done in float64.
    Returns a new array; ``x`` is not modified."""
    hi, lo = split_mean(mean, x.dtype)
    xmu = np.subtract(x, hi, dtype=x.dtype)
    if x.dtype != np.float64:
        xmu -= lo
    return xmu


def valid_count(x: np.ndarray, axes: Axes, weights: np.ndarray | None = None):
    """Values behind each statistic over ``axes``: an int, or with ``weights`` (1 valid,
    0 padding, broadcastable against x) a float64 array with the reduced axes kept."""
    if weights is None:
        return int(np.prod([x.shape[a] for a in axes]))
    return np.sum(np.broadcast_to(weights, x.shape), axis=axes, dtype=np.float64, keepdims=True)


def _weighted_sum(a: np.ndarray, axes: Axes, weights) -> np.ndarray:
    """sum(a) (or sum(weights * a)) over ``axes``, accumulated in float64, axes kept."""
    if weights is not None:
        a = a * weights
    return np.sum(a, axis=axes, dtype=np.float64, keepdims=True)


def moments(x: np.ndarray, axes: Axes, weights: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and biased variance of ``x`` over ``axes`` (of its valid values).

    Inputs:
    - x: floating-point array of any shape
    - axes: the axes to reduce
    - weights: None (every value), or 1 for a valid value and 0 for padding, in x's
      dtype, broadcastable against x
    Returns a tuple of:
    - mean, var: float64 arrays with the reduced axes kept as size 1 (var is inf
      where it overflows float64: the caller decides what to say)
    - xmu: x - mean, in x's dtype, at every position (the centred data, reused by the caller)
    """
    count = valid_count(x, axes, weights)
    mean = _weighted_sum(x, axes, weights) / count
    xmu = center(x, mean)
    # Corrected two-pass: the second term removes what rounding left in sum(xmu).
    resid = _weighted_sum(xmu, axes, weights)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected below
        sumsq = _weighted_sum(np.square(xmu), axes, weights)
        if not np.isfinite(sumsq).all():  # squares overflowed x's dtype: square scaled values
            scale = np.max(np.abs(xmu), axis=axes, keepdims=True).astype(np.float64)
            sumsq = _weighted_sum(np.square(xmu / scale.astype(x.dtype)), axes, weights) * (scale * scale)
        var = np.maximum((sumsq - resid * resid / count) / count, 0.0)
    return mean, var, xmu


def mean_square(x: np.ndarray, axes: Axes, weights: np.ndarray | None = None) -> np.ndarray:
    """mean(x**2) over ``axes`` (of the valid values, as ``moments``; kept as size 1),
    float64: the statistic of RMS norm. No cancellation can happen (every term is >= 0);
    squares that would overflow x's dtype are taken of values scaled by their largest
    magnitude."""
    count = valid_count(x, axes, weights)
    with np.errstate(over="ignore", invalid="ignore"):
        ms = _weighted_sum(np.square(x), axes, weights) / count
        if not np.isfinite(ms).all():
            scale = np.max(np.abs(x), axis=axes, keepdims=True).astype(np.float64)
            ms = _weighted_sum(np.square(x / scale.astype(x.dtype)), axes, weights) / count * (scale * scale)
    return ms


def reduce_sum(a: np.ndarray, axes: Axes, dtype) -> np.ndarray:
    """Sum over ``axes`` accumulated in float64, returned in ``dtype``."""
    return np.sum(a, axis=axes, dtype=np.float64).astype(dtype)


def reduce_mean(a: np.ndarray, axes: Axes) -> np.ndarray:
    """Mean over ``axes`` (kept as size 1) accumulated in float64, in a's dtype."""
    return np.mean(a, axis=axes, dtype=np.float64, keepdims=True).astype(a.dtype)


def normalize_backward(dxhat: np.ndarray, xhat: np.ndarray, invstd: np.ndarray, axes: Axes,
                       centered: bool = True, weights: np.ndarray | None = None) -> np.ndarray:
    """Closed-form gradient through xhat = (x - mean(x)) * invstd, stats over ``axes``.

    dx = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))

    The first term is the direct path through xhat, the second the path through
    the mean, the third the path through the variance. Uncentred (RMS norm:
    xhat = x * invstd, invstd = 1 / sqrt(mean(x**2) + eps)) there is no mean path.

    With ``weights`` (statistics over the valid values only; every value normalized):
    the sums still run over every value (each output depends on the statistics), are
    divided by the valid count, and reach back through the statistics to the valid
    values only: dx = invstd * (dxhat - w * (sum(dxhat) + xhat * sum(dxhat * xhat)) / n).
    """
    if weights is None:
        dx = dxhat - reduce_mean(dxhat, axes) if centered else dxhat.copy()
        dx -= xhat * reduce_mean(dxhat * xhat, axes)
        dx *= invstd
        return dx
    n = valid_count(xhat, axes, weights)
    through_stats = xhat * (_weighted_sum(dxhat * xhat, axes, None) / n)
    if centered:
        through_stats = through_stats + _weighted_sum(dxhat, axes, None) / n
    return ((dxhat - (weights * through_stats).astype(dxhat.dtype)) * invstd).astype(dxhat.dtype)


def combine_moments(counts: np.ndarray, means: np.ndarray, m2s: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Merge per-part statistics into those of the whole (Chan, Golub & LeVeque).

    Inputs (float64):
    - counts: (K,) values per channel in each part; a part may be empty (0)
    - means, m2s: (K, C) mean and centred sum of squares of each part
    Returns the total count, the mean (C,) and the centred sum of squares (C,)
    of the union. The between-part term sum_k n_k (mean_k - mean)^2 uses only
    differences of means, so parts with a large common mean lose nothing, and
    uneven parts are weighted exactly.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return 0, np.zeros(means.shape[1]), np.zeros(means.shape[1])
    w = counts[:, None]
    mean = (w * means).sum(axis=0) / total
    m2 = m2s.sum(axis=0) + (w * np.square(means - mean)).sum(axis=0)
    return int(total), mean, m2
