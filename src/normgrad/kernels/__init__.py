"""Fused normalization kernels: the fast path, chosen automatically.

Numba kernels (compiled on first use and cached on disk) when Numba is installed;
otherwise, or when forced, the same kernels in NumPy. Force the NumPy path with the
environment variable ``NORMGRAD_KERNELS=numpy`` or ``use_numpy(True)``;
``backend()`` says which is in use (``_dispatch``).

Every norm is read from its ``NormSpec`` (``normgrad.core.specs``), any spec a user
declares included: statistics across the batch run on the *channel* kernels
(``_numba_channel``), statistics per sample on the *row* kernels (``_numba_row``);
``_norms`` holds the stages. The functions keep x's dtype (float32 stays float32,
elementwise work too; statistics are accumulated in float64) and keep no array of
x's size between forward and backward: a training forward returns ``NormStats``
(mean, biased var, invstd; float64, (C,) or (N, G)) and the backward recomputes
xhat from x. ``norm_double_backward`` differentiates the training backward once more
(gradient penalties), in two passes over the data.

Checks: every function checks shapes, dtypes and eps like ``normgrad.functional``.
NaN/Inf are caught where a function reduces over its input (the forwards,
backwards, ``batchnorm_stats`` and ``batchnorm_grad_sums``), at no extra pass.
The elementwise halves of the split batch norm (``batchnorm_normalize``,
``batchnorm_grad_input``) do not scan for them: in a synchronized step their
inputs have just passed ``batchnorm_stats`` / ``batchnorm_grad_sums``.

Shapes: batch norm takes x (N, C) or (N, C, *spatial); group norm x (N, C,
*spatial); layer norm x (..., D) normalized over the last axis.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..core import validate as v
from ..core.specs import BATCH, GROUP, LAYER, NormSpec
from ..core.stats import NormStats
from . import _checks as check
from . import _numpy
from ._dispatch import NCHUNKS, PARALLEL_MIN_SIZE, _numba, backend, use_numpy
from ._norms import (channel_affine, channel_double_backward, channel_grad_input, channel_grad_sums, channel_moments,
                     input_gradient_coefficients, last_backward, last_forward, sample_backward,
                     sample_double_backward, sample_forward)

try:
    from ._fpmode import flushing_denormals, set_flush_denormal
except ImportError:  # Numba not installed: no switch for subnormals

    def set_flush_denormal(enabled: bool) -> bool:
        """Needs Numba: does nothing and returns False here."""
        return False

    def flushing_denormals():
        return contextlib.nullcontext(False)


def _per_channel(spec: NormSpec, a: np.ndarray) -> np.ndarray:
    """x as (N, C, L): channels on axis 1, every other position on axes 0 and 2."""
    if spec.features_last:
        return a.reshape(-1, a.shape[-1], 1)
    return a.reshape(a.shape[0], a.shape[1], -1)


def _running(running, C: int, eps: float) -> NormStats:
    if not isinstance(running, (tuple, list)) or len(running) != 2:
        raise TypeError("running must be a (running_mean, running_var) pair")
    running_var = check.vector("running_var", running[1], C)
    if (running_var < 0).any():
        raise ValueError("running_var must be >= 0 everywhere")
    return NormStats.of(check.vector("running_mean", running[0], C), running_var, eps)


# ----------------------------------------------------------------------------- any norm


def norm_forward(spec: NormSpec, x, gamma, beta, *, G: int | None = None, eps: float = 1e-5,
                 running: tuple | None = None, mask=None, out=None):
    """Normalize x as ``spec`` says, scale by gamma and shift by beta (each (C,)).

    - G: groups, for specs that take them (group norm)
    - running: (mean, var), each (C,), to use instead of batch statistics
      (evaluation with running statistics)
    - mask: bool, x's shape without its channel axis, True = valid: the statistics are
      over the valid positions only, every position is normalized with them
    - out: optional preallocated output, x's shape and dtype
    Returns y (x's shape and dtype) and the NormStats used: (C,) fields for
    batch or running statistics, (N, G) per sample.
    """
    x = check.data(x, 1 if spec.features_last else 2)
    C = spec.channels(x.shape)
    gamma, beta = check.vector("gamma", gamma, C), check.vector("beta", beta, C)
    eps = v.eps_value(eps, x.dtype)
    groups = spec.num_groups(C, G)
    fixed = None if running is None else _running(running, C, eps)
    weights = None if mask is None or fixed is not None else spec.mask_weights(mask, x.shape, groups, x.dtype)
    y = check.output(out, x)
    if fixed is not None:
        v.finite("x", x)  # no reduction in this mode to catch it
    return y, forward_stages(spec, x, gamma, beta, groups, eps, y, fixed, weights)


def forward_stages(spec: NormSpec, x, gamma, beta, groups: int, eps: float, y, fixed=None, weights=None,
                   channels_last: bool = False) -> NormStats:
    """``norm_forward``'s work on arguments already checked: x a C-contiguous float array,
    gamma and beta float64 (C,), y x's like, fixed the NormStats to use (None: the
    batch's), weights (N, L) of the mask's valid positions (None: all). Writes y, returns
    the NormStats. NaN/Inf in x raise ``NonFiniteError`` where statistics are computed and
    propagate with fixed statistics (normgrad.torch's operators call this directly).
    ``channels_last``: x and y are (N, *spatial, C), a channels-last tensor's memory, for
    a centred per-sample spec (group, instance norm) with batch statistics and no mask."""
    if channels_last:
        x3, y3 = x.reshape(x.shape[0], -1, x.shape[-1]), y.reshape(y.shape[0], -1, y.shape[-1])
        return last_forward(spec, x3, gamma, beta, groups, eps, y3)
    if fixed is not None:
        channel_affine(_per_channel(spec, x), fixed.mean, fixed.invstd * gamma, beta, _per_channel(spec, y))
        return fixed
    if spec.across == "sample":
        return sample_forward(spec, x, gamma, beta, groups, eps, y, weights)
    x3 = _per_channel(spec, x)
    count = x.size // x3.shape[1] if weights is None else int(weights.sum())
    v.enough_values(count, f"input of shape {x.shape}" + ("" if weights is None else " with its mask"))
    stats = NormStats.of(*channel_moments(spec, x3, weights), eps)
    channel_affine(x3, stats.mean, stats.invstd * gamma, beta, _per_channel(spec, y))
    return stats


def norm_backward(spec: NormSpec, dy, x, gamma, stats, *, G: int | None = None, batch_stats: bool = True,
                  mask=None, out=None):
    """Gradients of ``norm_forward``, given its x, gamma, NormStats and mask.

    ``batch_stats=False``: the statistics were constants (running statistics in
    evaluation). Returns (dx, dgamma, dbeta): dx in x's shape and dtype, the others
    (C,) float64. With a mask the sums run over every position (each output depends on
    the statistics) and reach back through the statistics to the valid positions only.
    """
    x = check.data(x, 1 if spec.features_last else 2)
    dy = check.upstream(dy, x)
    C = spec.channels(x.shape)
    gamma = check.vector("gamma", gamma, C)
    groups = spec.num_groups(C, G)
    weights = None if mask is None or not batch_stats else spec.mask_weights(mask, x.shape, groups, x.dtype)
    per_sample = spec.across == "sample" and batch_stats
    stats = check.stats(stats, spec.stats_shape(spec.view(x.shape, groups)) if per_sample else (C,))
    dx = check.output(out, x)
    return (dx, *backward_stages(spec, dy, x, gamma, groups, stats, dx, batch_stats, weights))


def backward_stages(spec: NormSpec, dy, x, gamma, groups: int, stats: NormStats, dx, batch_stats: bool = True,
                    weights=None, channels_last: bool = False):
    """``norm_backward``'s work on arguments already checked (as ``forward_stages``; dy
    x's like, stats float64 C-contiguous): writes dx, returns (dgamma, dbeta) float64 (C,)."""
    if channels_last:
        def view(a):
            return a.reshape(a.shape[0], -1, a.shape[-1])
        return last_backward(spec, view(dy), view(x), gamma, groups, stats, view(dx))
    if spec.across == "sample" and batch_stats:
        return sample_backward(spec, dy, x, gamma, groups, stats, dx, weights)
    C = stats.mean.size
    x3, dy3 = _per_channel(spec, x), _per_channel(spec, dy)
    sum_dy, sum_dy_xmu = channel_grad_sums(dy3, x3, stats.mean)
    count = x.size // C if weights is None else float(weights.sum(dtype=np.float64))
    coefs = input_gradient_coefficients(spec, stats, gamma, sum_dy, sum_dy_xmu, count, bool(batch_stats))
    channel_grad_input(dy3, x3, stats.mean, *coefs, _per_channel(spec, dx), weights)
    return sum_dy_xmu * stats.invstd, sum_dy


def norm_double_backward(spec: NormSpec, dy, x, gamma, stats, a, ga=None, gb=None, *, G: int | None = None,
                         out=None):
    """Gradients of ``norm_backward`` (training: batch statistics, no mask) with respect to
    its dy, x and gamma, given the gradients of its outputs: a of dx (x's shape), ga of
    dgamma and gb of dbeta ((C,) each; None: zero). The second derivatives a gradient
    penalty needs, in two passes over the data.

    - out: optional (ddy, dx) pair of preallocated outputs, x's shape and dtype
    Returns (ddy, dx, dgamma): ddy (of dy) and dx (of x) in x's shape and dtype, dgamma
    (of gamma) (C,) float64.
    """
    x = check.data(x, 1 if spec.features_last else 2)
    dy = check.upstream(dy, x)
    a = check.upstream(a, x, "a")
    C = spec.channels(x.shape)
    gamma = check.vector("gamma", gamma, C)
    ga, gb = (np.zeros(C) if p is None else check.vector(name, p, C) for name, p in (("ga", ga), ("gb", gb)))
    groups = spec.num_groups(C, G)
    ddy_out, dx_out = (None, None) if out is None else out
    ddy, dx = check.output(ddy_out, x, "out[0]"), check.output(dx_out, x, "out[1]")
    if spec.across == "sample":
        stats = check.stats(stats, spec.stats_shape(spec.view(x.shape, groups)))
        return ddy, dx, sample_double_backward(spec, dy, x, a, gamma, ga, gb, groups, stats, ddy, dx)
    stats = check.stats(stats, (C,))
    dgamma = channel_double_backward(spec, _per_channel(spec, dy), _per_channel(spec, x), _per_channel(spec, a),
                                     stats, gamma, ga, gb, _per_channel(spec, ddy), _per_channel(spec, dx))
    return ddy, dx, dgamma


# ----------------------------------------------------------------------------- batch norm


def batchnorm_forward(x, gamma, beta, *, training: bool, running_mean=None, running_var=None,
                      eps: float = 1e-5, out=None):
    """Batch norm, per channel over N and spatial positions.

    Inputs:
    - x: (N, C) or (N, C, *spatial)
    - gamma, beta: (C,)
    - training: batch statistics if True, else running_mean / running_var (C,)
    - out: optional preallocated output, x's shape and dtype
    Returns a tuple of:
    - y: x's shape and dtype
    - stats: NormStats (mean, var, invstd), each (C,) float64: the statistics used
      (for the backward and the running averages)
    """
    if not training and (running_mean is None or running_var is None):
        raise ValueError("evaluation mode needs running_mean and running_var")
    return norm_forward(BATCH, x, gamma, beta, eps=eps, running=None if training else (running_mean, running_var),
                        out=out)


def batchnorm_backward(dy, x, gamma, stats, *, training: bool = True, out=None):
    """Gradients of batch norm, given the forward's x, gamma and stats (NormStats, (C,) each).

    Returns (dx, dgamma, dbeta): dx in x's shape and dtype, the others (C,) float64.
    With training=False the statistics were constants (evaluation mode).
    """
    return norm_backward(BATCH, dy, x, gamma, stats, batch_stats=bool(training), out=out)


# The split batch norm below is what a synchronized batch norm needs: local
# statistics, exchanged and combined by the caller (normgrad.core.sync), then the
# elementwise passes with the global statistics.

def batchnorm_stats(x, mask=None):
    """Per-channel mean and biased variance of x (N, C, *spatial) over N and the
    spatial axes: two (C,) float64 arrays, from x.size // C values each (with a mask,
    bool (N, *spatial), over its True positions)."""
    x = check.data(x, 2)
    weights = None if mask is None else BATCH.mask_weights(mask, x.shape, None, x.dtype)
    return channel_moments(BATCH, _per_channel(BATCH, x), weights)


def batchnorm_normalize(x, mean, invstd, gamma, beta, *, out=None):
    """y = (x - mean) * invstd * gamma + beta per channel; x (N, C, *spatial), the rest (C,)."""
    x = check.data(x, 2)
    C = x.shape[1]
    mean, invstd, gamma, beta = (check.vector(n, a, C) for n, a in
                                 (("mean", mean), ("invstd", invstd), ("gamma", gamma), ("beta", beta)))
    y = check.output(out, x)
    channel_affine(_per_channel(BATCH, x), mean, invstd * gamma, beta, _per_channel(BATCH, y))
    return y


def batchnorm_grad_sums(dy, x, mean):
    """Per-channel sum(dy) and sum(dy * (x - mean)): two (C,) float64 arrays.

    Summed over every process of a synchronized batch norm they are dbeta and
    dgamma / invstd of the whole batch."""
    x = check.data(x, 2)
    dy = check.upstream(dy, x)
    return channel_grad_sums(_per_channel(BATCH, dy), _per_channel(BATCH, x), check.vector("mean", mean, x.shape[1]))


def batchnorm_grad_input(dy, x, mean, invstd, gamma, sum_dy, sum_dy_xmu, count: int, *, mask=None, out=None):
    """dx of a training-mode batch norm whose statistics came from ``count`` values
    per channel (over all processes), given the sums from ``batchnorm_grad_sums``
    added over all processes:

        dx = gamma * invstd * (dy - sum_dy / count - (x - mean) * invstd**2 * sum_dy_xmu / count)

    x, dy: (N, C, *spatial); the rest (C,). With ``mask`` (bool (N, *spatial), the
    forward's), ``count`` is the valid positions over all processes and the last two
    terms reach the valid positions only. Returns dx in x's shape and dtype.
    """
    x = check.data(x, 2)
    C = x.shape[1]
    dy = check.upstream(dy, x)
    mean, invstd, gamma, sum_dy, sum_dy_xmu = (check.vector(n, a, C) for n, a in (
        ("mean", mean), ("invstd", invstd), ("gamma", gamma), ("sum_dy", sum_dy), ("sum_dy_xmu", sum_dy_xmu)))
    count = v.integer_value("count", count)
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    dx = check.output(out, x)
    coefs = input_gradient_coefficients(BATCH, NormStats(mean, mean, invstd), gamma, sum_dy, sum_dy_xmu, count)
    weights = None if mask is None else v.mask_array(mask, x.shape, 1).reshape(x.shape[0], -1).astype(x.dtype)
    channel_grad_input(_per_channel(BATCH, dy), _per_channel(BATCH, x), mean, *coefs, _per_channel(BATCH, dx),
                       weights)
    return dx


# ----------------------------------------------------------------------------- per-sample norms


def groupnorm_forward(x, gamma, beta, G, *, eps: float = 1e-5, out=None):
    """Group norm: statistics per example and group of C/G channels.

    Inputs: x (N, C, *spatial); gamma, beta (C,); G divides C.
    Returns y (x's shape, dtype) and NormStats, each field (N, G) float64.
    """
    return norm_forward(GROUP, x, gamma, beta, G=G, eps=eps, out=out)


def groupnorm_backward(dy, x, gamma, G, stats, *, out=None):
    """Gradients of group norm. Returns (dx, dgamma (C,), dbeta (C,))."""
    return norm_backward(GROUP, dy, x, gamma, stats, G=G, out=out)


def layernorm_forward(x, gamma, beta, *, eps: float = 1e-5, out=None):
    """Layer norm over the last axis. x (..., D); gamma, beta (D,).

    Returns y (x's shape, dtype) and NormStats, each field (R, 1), R = x.size // D.
    """
    return norm_forward(LAYER, x, gamma, beta, eps=eps, out=out)


def layernorm_backward(dy, x, gamma, stats, *, out=None):
    """Gradients of layer norm over the last axis. Returns (dx, dgamma (D,), dbeta (D,))."""
    return norm_backward(LAYER, dy, x, gamma, stats, out=out)


def adam_step(w, dw, m, v, learning_rate, beta1, beta2, epsilon, t):
    """One Adam update in one pass over the arrays (``normgrad.optim.adam``'s fast path):
    returns new (next_w, m, v) of w's shape and dtype; the inputs are not modified.
    w, dw, m, v: arrays of one shape and float dtype; t: the update's number (from 1)."""
    arrays = [np.ascontiguousarray(a, dtype=w.dtype).reshape(-1) for a in (w, dw, m, v)]
    out = [np.empty_like(arrays[0]) for _ in range(3)]
    if backend() == "numpy":
        _numpy.adam_step(*arrays, learning_rate, beta1, beta2, epsilon, t, *out)
    else:
        scalar = w.dtype.type
        _numba.adam_step(*arrays, scalar(beta1), scalar(beta2), scalar(epsilon), scalar(learning_rate / (1 - beta1**t)),
                         scalar(1 / (1 - beta2**t)), np.finfo(w.dtype).tiny, *out)
    return tuple(a.reshape(np.shape(w)) for a in out)


__all__ = [
    "NCHUNKS",
    "PARALLEL_MIN_SIZE",
    "adam_step",
    "flushing_denormals",
    "set_flush_denormal",
    "backend",
    "use_numpy",
    "NormStats",
    "norm_forward",
    "norm_backward",
    "norm_double_backward",
    "forward_stages",
    "backward_stages",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_stats",
    "batchnorm_normalize",
    "batchnorm_grad_sums",
    "batchnorm_grad_input",
    "groupnorm_forward",
    "groupnorm_backward",
    "layernorm_forward",
    "layernorm_backward",
]
