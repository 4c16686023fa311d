"""Any norm on the fused kernels, read from its ``NormSpec``: the stages of the pipeline.

A spec's (N, G, K, L) view of x goes to one of two kernel families:

- statistics across the batch (``across="batch"``): the *channel* kernels over x
  viewed as (N, C, L), C = G*K; the stages are separate calls (statistics, affine,
  gradient sums, input gradient) so a caller can reduce the statistics or the sums
  between them (synchronized, ghost or renormalized batch norm);
- statistics per sample (``across="sample"``): the *row* kernels over x viewed as
  (N*G, K, L), forward and backward each fused in one pass per row; on channels-last
  memory (group and instance norm of an NHWC tensor) the *last* kernels over (N, L, C).

Every spec field is honoured: ``features_last`` and ``groups`` through the view,
``centered`` in the statistics (uncentred: mean 0, var the mean square) and in the
backward (no path through a mean), ``running_stats`` by the callers (``running=``).

Values stay in x's dtype; statistics are float64 (``NormStats``). When a kernel's
statistics or sums are not finite although x (and dy) are (float32 values beyond
~1e19, whose squares overflow float32 inside the fused kernels), the NumPy kernel,
which scales such values, computes them instead.
"""

from __future__ import annotations

import numpy as np

from ..core import validate as v
from ..core.specs import NormSpec
from ..core.stats import NormStats, split_mean
from . import _checks as check
from . import _numpy
from ._dispatch import kernel


def as_channels(spec: NormSpec, a: np.ndarray, G: int | None = None) -> np.ndarray:
    """The spec's (N, G, K, L) view as (N, G*K, L) across the batch, (N*G, K, L) per sample."""
    N, groups, K, L = spec.view(a.shape, G)
    return a.reshape(N, groups * K, L) if spec.across == "batch" else a.reshape(N * groups, K, L)


def _finite_or_numpy(results, numpy_call, *inputs):
    """``results`` if finite; else, for finite inputs, the NumPy kernel's (it scales
    values whose squares overflow x's dtype); NonFiniteError naming a bad input."""
    if all(np.isfinite(r).all() for r in results):
        return results
    for input_name, a in inputs:
        v.finite(input_name, a)
    results = numpy_call()
    check.finite_after(results)
    return results


def channel_moments(spec: NormSpec, x3: np.ndarray, weights: np.ndarray | None = None):
    """Per-channel (mean, biased var), (C,) float64 each, of x (N, C, L) over its valid
    positions (weights (N, L) in x's dtype, 1 valid, 0 padding; None: all); uncentred:
    (0, mean square)."""
    N, _, L = x3.shape
    count = N * L if weights is None else float(weights.sum(dtype=np.float64))
    run, chunks = kernel("channel_stats", x3.size)
    stats = run(x3, spec.centered, weights, count, chunks)
    return _finite_or_numpy(stats, lambda: _numpy.channel_stats(x3, spec.centered, weights, count, 1),
                            ("x", x3))


def channel_affine(x3, mean, scale, shift, y3) -> None:
    """y = (x - mean) * scale + shift per channel (float64 (C,) coefficients), elementwise in x's dtype."""
    hi, lo = split_mean(mean, x3.dtype)
    run, chunks = kernel("channel_affine", x3.size)
    run(x3, hi, lo, scale.astype(x3.dtype), shift.astype(x3.dtype), y3, chunks)


def channel_grad_sums(dy3, x3, mean):
    """Per-channel sum(dy) and sum(dy * (x - mean)), (C,) float64, over dy, x (N, C, L)."""
    hi, lo = split_mean(mean, x3.dtype)
    run, chunks = kernel("channel_grad_sums", x3.size)
    sums = run(dy3, x3, hi, lo, chunks)
    return _finite_or_numpy(sums, lambda: _numpy.channel_grad_sums(dy3, x3, hi, lo, 1), ("dy", dy3), ("x", x3))


def channel_grad_input(dy3, x3, mean, scale, c1, c2, dx3, weights=None) -> None:
    """dx = (dy - w * (c1 + (x - mean) * c2)) * scale per channel (float64 (C,)
    coefficients; w the weights (N, L) of the valid positions, None: all)."""
    hi, lo = split_mean(mean, x3.dtype)
    run, chunks = kernel("channel_grad_input", x3.size)
    run(dy3, x3, hi, lo, *(c.astype(x3.dtype) for c in (scale, c1, c2)), weights, dx3, chunks)


def input_gradient_coefficients(spec: NormSpec, stats: NormStats, gamma, sum_dy, sum_dy_xmu, count: int,
                                batch_stats: bool = True):
    """(scale, c1, c2) of dx = (dy - c1 - (x - mean) * c2) * scale, per channel, from the
    batch's sums of ``count`` values: the closed form's direct, mean and variance paths."""
    scale = gamma * stats.invstd
    if not batch_stats:  # the statistics were constants: only the direct path
        return scale, np.zeros_like(scale), np.zeros_like(scale)
    c1 = sum_dy / count if spec.centered else np.zeros_like(scale)
    return scale, c1, sum_dy_xmu * stats.invstd**2 / count


def sample_forward(spec: NormSpec, x, gamma, beta, groups: int, eps: float, y, weights=None) -> NormStats:
    """The row kernels' fused forward: y written, NormStats (N, G) returned; weights (N, L)
    of the valid positions (None: all)."""
    x3, y3 = as_channels(spec, x, groups), as_channels(spec, y, groups)
    R = x3.shape[0]
    mean, var, invstd = np.empty(R), np.empty(R), np.empty(R)
    args = (gamma.astype(x.dtype), beta.astype(x.dtype), groups, eps, spec.centered, weights, y3, mean, var, invstd)
    run, chunks = kernel("row_forward", x.size)
    run(x3, *args, chunks)

    def with_numpy():  # writes y and the statistics again
        _numpy.row_forward(x3, *args, 1)
        return mean, var

    _finite_or_numpy((mean, var), with_numpy, ("x", x))
    shape = (R // groups, groups)
    return NormStats(mean.reshape(shape), var.reshape(shape), invstd.reshape(shape))


def sample_backward(spec: NormSpec, dy, x, gamma, groups: int, stats: NormStats, dx, weights=None):
    """The row kernels' fused backward: dx written, (dgamma, dbeta) (C,) float64 returned."""
    x3 = as_channels(spec, x, groups)
    args = (as_channels(spec, dy, groups), x3, gamma.astype(x.dtype), groups, spec.centered, weights,
            stats.mean.reshape(-1), stats.invstd.reshape(-1), as_channels(spec, dx, groups))
    run, chunks = kernel("row_backward", x.size)
    sums = run(*args, chunks)
    return _finite_or_numpy(sums, lambda: _numpy.row_backward(*args, 1), ("dy", dy), ("x", x))


def last_forward(spec: NormSpec, x3, gamma, beta, groups: int, eps: float, y3) -> NormStats:
    """A centred per-sample norm (group, instance) on channels-last memory, x3 and y3
    (N, L, C): y written, NormStats (N, G) returned."""
    N = x3.shape[0]
    mean, var, invstd = np.empty((N, groups)), np.empty((N, groups)), np.empty((N, groups))
    args = (gamma.astype(x3.dtype), beta.astype(x3.dtype), groups, eps, y3, mean, var, invstd)
    run, chunks = kernel("last_forward", x3.size)
    run(x3, *args, chunks)

    def with_numpy():  # writes y and the statistics again
        _numpy.last_forward(x3, *args, 1)
        return mean, var

    _finite_or_numpy((mean, var), with_numpy, ("x", x3))
    return NormStats(mean, var, invstd)


def last_backward(spec: NormSpec, dy3, x3, gamma, groups: int, stats: NormStats, dx3):
    """``last_forward``'s backward: dx3 written, (dgamma, dbeta) (C,) float64 returned."""
    args = (dy3, x3, gamma.astype(x3.dtype), groups, stats.mean, stats.invstd, dx3)
    run, chunks = kernel("last_backward", x3.size)
    return _finite_or_numpy(run(*args, chunks), lambda: _numpy.last_backward(*args, 1), ("dy", dy3), ("x", x3))


# ----------------------------------------------------------------------------- double backward


def channel_double_coefficients(spec: NormSpec, invstd, gamma, ga, gb, sums, count: int):
    """(coefs (7, C), dgamma (C,)), float64, of the channel family's double backward from
    the five per-channel sums of ``count`` values (``channel_double_sums``).

    Per channel, r = invstd, <.> the mean over the channel's values, P(v) = v - <v> -
    xhat <v xhat> (uncentred: no <v>), a, ga, gb the gradients of dx, dgamma, dbeta:
    grad of dy = gamma r P(a) + ga xhat + gb; grad of gamma = r sum(a P(dy)); grad of x =
    r P(h) - r**2 xhat gamma <a P(dy)>, h = ga dy - gamma r (a <dy xhat> + dy <a xhat>).
    coefs: ddy = ca a + cx (x - mean) + c0 and dx = kdy dy + ka a + k1 (x - mean) + k0."""
    s_dy, s_dyxmu, s_a, s_axmu, s_ady = sums
    r = invstd
    zero = np.zeros_like(r)
    m_dy = s_dy / count if spec.centered else zero
    m_a = s_a / count if spec.centered else zero
    m_dyx, m_ax, m_ady = s_dyxmu * r / count, s_axmu * r / count, s_ady / count
    a_p_dy = m_ady - m_a * m_dy - m_ax * m_dyx  # <a P(dy)>
    gr = gamma * r
    h_mean = ga * m_dy - gr * (m_a * m_dyx + m_dy * m_ax) if spec.centered else zero  # <h>
    h_xhat = ga * m_dyx - 2 * gr * m_ax * m_dyx  # <h xhat>
    coefs = np.stack([gr, (ga - gr * m_ax) * r, gb - gr * m_a,
                      r * ga - r * gr * m_ax, -r * gr * m_dyx, -(r * h_xhat + r * gr * a_p_dy) * r, -r * h_mean])
    return coefs, r * count * a_p_dy


def channel_double_backward(spec: NormSpec, dy3, x3, a3, stats: NormStats, gamma, ga, gb, ddy3, dx3):
    """The channel family's double backward over (N, C, L) views: ddy3 and dx3 written,
    dgamma (C,) float64 returned; ga, gb (C,) float64."""
    hi, lo = split_mean(stats.mean, x3.dtype)
    run, chunks = kernel("channel_double_sums", x3.size)
    sums = run(dy3, x3, a3, hi, lo, chunks)
    sums, = _finite_or_numpy((sums,), lambda: (_numpy.channel_double_sums(dy3, x3, a3, hi, lo, 1),),
                             ("dy", dy3), ("x", x3), ("a", a3))
    N, C, L = x3.shape
    coefs, dgamma = channel_double_coefficients(spec, stats.invstd, gamma, ga, gb, sums, N * L)
    run, chunks = kernel("channel_double_apply", x3.size)
    run(dy3, x3, a3, hi, lo, coefs.astype(x3.dtype), ddy3, dx3, chunks)
    return dgamma


def sample_double_backward(spec: NormSpec, dy, x, a, gamma, ga, gb, groups: int, stats: NormStats, ddy, dx):
    """The row kernels' fused double backward: ddy and dx written, dgamma (C,) float64 returned."""
    args = (as_channels(spec, dy, groups), as_channels(spec, x, groups), as_channels(spec, a, groups),
            *(p.astype(x.dtype) for p in (gamma, ga, gb)), groups, spec.centered, stats.mean.reshape(-1),
            stats.invstd.reshape(-1), as_channels(spec, ddy, groups), as_channels(spec, dx, groups))
    run, chunks = kernel("row_double_backward", x.size)
    dgamma = run(*args, chunks)
    dgamma, = _finite_or_numpy((dgamma,), lambda: (_numpy.row_double_backward(*args, 1),),
                               ("dy", dy), ("x", x), ("a", a))
    return dgamma
