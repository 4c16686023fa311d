"""Every norm's forward and backward in torch operations, for any device and float dtype.

The path CUDA tensors, bfloat16 and float16 take (and CPU tensors when forced), read
from the norm's ``NormSpec`` like the kernels: x is viewed as (N, G, K, L) and the
statistics reduce over ``spec.reduce_axes``. Arithmetic runs in the *accumulation
dtype*: float64 for float64 input, float32 otherwise (float64 would double the
memory traffic and is slow on GPUs). Statistics are *shifted*: each statistic's values
minus its first value (exact in floating point for values within a factor of 2 of it),
then a stable reduction of those (``torch.var_mean``, or two passes with a mask; never
E[x^2] - E[x]^2), so float32 keeps its precision at a large mean (mean 1e4, std 1:
output error ~1e-6, where unshifted float32 sums lose ~1e-2). The forward normalizes the
shifted values; x - mean elsewhere splits a float64 mean into two float32 parts.

These functions are also ``torch.compile``'s view of normgrad's operators (``decompositions``):
inductor fuses them with their neighbours.

Every function is differentiable with torch's autograd, so the backward built from
them can itself be differentiated (double backward): ``backward`` with statistics
recomputed from x by ``moments`` is an exact function of (dy, x, weight).

Shapes: x (N, C, *spatial) or (..., D) for features-last norms; weight, bias (C,);
statistics as ``spec.stats_shape``: (C,) across the batch, (N, G) per sample.
"""

from __future__ import annotations

import torch

from ..core.specs import NormSpec


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _view(spec: NormSpec, x: torch.Tensor, groups: int):
    view = spec.view(tuple(x.shape), groups if spec.groups == "given" else None)
    return x.reshape(view).to(accumulation_dtype(x.dtype)), view


def _stat(spec: NormSpec, s: torch.Tensor, view) -> torch.Tensor:
    """A statistic of ``spec.stats_shape`` broadcast against the (N, G, K, L) view."""
    N, G, K, _ = view
    return s.reshape(1, G, K, 1) if spec.across == "batch" else s.reshape(N, G, 1, 1)


def _param(p: torch.Tensor | None, view, dtype, default: float) -> torch.Tensor | float:
    """weight or bias broadcast against the view; ``default`` when None."""
    _, G, K, _ = view
    return default if p is None else p.to(dtype).reshape(1, G, K, 1)


def mask_weights(spec: NormSpec, x: torch.Tensor, mask: torch.Tensor | None, groups: int):
    """A bool mask (x's shape without the channel axis) as weights (N, 1, 1, L) against the
    view, in the accumulation dtype (None stays None)."""
    if mask is None:
        return None
    N, _, _, L = spec.view(tuple(x.shape), groups if spec.groups == "given" else None)
    return mask.reshape(N, 1, 1, L).to(accumulation_dtype(x.dtype))


def valid_count(spec: NormSpec, xv: torch.Tensor, w) -> torch.Tensor:
    """Valid values behind each statistic of the view xv, reduced axes kept."""
    return torch.broadcast_to(w, xv.shape).sum(dim=spec.reduce_axes, keepdim=True)


def _shift(spec: NormSpec, xv: torch.Tensor, w) -> torch.Tensor:
    """Per statistic, a value near its mean (reduced axes kept, no gradient): the first
    value; with a mask, the plain mean of the valid values (the first may be padding)."""
    if w is not None:
        return ((xv * w).sum(dim=spec.reduce_axes, keepdim=True) / valid_count(spec, xv, w)).detach()
    return (xv[:1, :, :, :1] if spec.across == "batch" else xv[:, :, :1, :1]).detach()


def shifted_moments(spec: NormSpec, xv: torch.Tensor, w=None):
    """(shift, mean of x - shift, biased var), reduced axes kept, accumulation dtype, of the
    view xv over the valid positions of weights w (None: all). Uncentred (RMS norm):
    (0, 0, mean of squares)."""
    axes = spec.reduce_axes
    if not spec.centered:
        if w is None:
            var = xv.square().mean(dim=axes, keepdim=True)
        else:
            var = (xv.square() * w).sum(dim=axes, keepdim=True) / valid_count(spec, xv, w)
        zero = torch.zeros_like(var)
        return zero, zero, var
    shift = _shift(spec, xv, w)
    d = xv - shift
    if w is None:
        var, mean_d = torch.var_mean(d, dim=axes, correction=0, keepdim=True)
    else:  # two passes over the valid values: the mean, then the centred squares
        n = valid_count(spec, xv, w)
        mean_d = (d * w).sum(dim=axes, keepdim=True) / n
        var = ((d - mean_d).square() * w).sum(dim=axes, keepdim=True) / n
    return shift, mean_d, var


def moments(spec: NormSpec, x: torch.Tensor, groups: int, mask=None, stats_dtype=None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, biased var) of ``spec.stats_shape`` in ``stats_dtype`` (default: the
    accumulation dtype), over the valid positions of ``mask`` (None: all); RMS norm's mean
    is 0 and its var the mean of squares."""
    xv, view = _view(spec, x, groups)
    shift, mean_d, var = shifted_moments(spec, xv, mask_weights(spec, x, mask, groups))
    dtype = stats_dtype or xv.dtype
    shape = spec.stats_shape(view)
    return (shift.to(dtype) + mean_d.to(dtype)).reshape(shape), var.to(dtype).reshape(shape)


def centred(xv: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """xv - mean in xv's dtype; a float64 mean against float32 values is subtracted as two
    float32 parts (hi, then the remainder), keeping the mean's precision."""
    if mean.dtype == xv.dtype:
        return xv - mean
    hi = mean.to(xv.dtype)
    return (xv - hi) - (mean - hi.to(mean.dtype)).to(xv.dtype)


def normalize(spec: NormSpec, x, mean, invstd, weight, bias, groups: int) -> torch.Tensor:
    """y = (x - mean) * invstd * weight + bias, in x's shape and dtype."""
    xv, view = _view(spec, x, groups)
    return _affine(centred(xv, _stat(spec, mean, view)), _stat(spec, invstd, view).to(xv.dtype), weight, bias,
                   view).reshape(x.shape).to(x.dtype)


def _affine(xmu, invstd, weight, bias, view):
    """(x - mean) * invstd * weight + bias against the view."""
    return xmu * (invstd * _param(weight, view, xmu.dtype, 1.0)) + _param(bias, view, xmu.dtype, 0.0)


def _per_channel(t: torch.Tensor, view) -> torch.Tensor:
    """A (B, G, K, 1) coefficient as a buffer of its own, (B, G*K) in memory, viewed back:
    inductor then reads it by (sample, channel) in the elementwise loop instead of
    recomputing it there from per-group values (an integer division per element, which
    keeps the loop scalar); as torch's own CPU decomposition of group norm does."""
    B, G, K = t.shape[0], view[1], view[2]
    t = torch.broadcast_to(t, (B, G, K, 1)).contiguous()
    return t.as_strided((B, G * K), (G * K, 1)).reshape(B, G, K, 1)


def forward(spec: NormSpec, x, weight, bias, groups: int, eps: float, running=None, mask=None, stats_dtype=None,
            channel_buffers: bool = False):
    """(y, mean, var, invstd): batch statistics (over the mask's valid positions), or
    ``running`` = (mean, var) (C,) when given; statistics in ``stats_dtype`` (default: the
    accumulation dtype), y from the shifted values. ``channel_buffers``: the elementwise
    pass's per-channel coefficients as buffers of their own (``_per_channel``: for inductor)."""
    if running is not None:
        dtype = stats_dtype or accumulation_dtype(x.dtype)
        mean, var = (r.to(dtype) for r in running)
        invstd = torch.rsqrt(var + eps)
        return normalize(spec.with_channel_stats(), x, mean, invstd, weight, bias, groups), mean, var, invstd
    xv, view = _view(spec, x, groups)
    shift, mean_d, var = shifted_moments(spec, xv, mask_weights(spec, x, mask, groups))
    invstd = torch.rsqrt(var + eps)
    # y = (x - s) * scale + offset, offset = beta + ((s - shift) - mean_d) * scale: the shifted
    # precision (x - s exact) with coefficients per (sample or 1, channel); per-sample norms
    # over many positions shift by each channel's first value, so that the elementwise pass
    # reads per-channel values only and vectorizes under inductor
    many_positions = view[3] > 1  # (N, C, *spatial): coefficients per (sample, channel) are small
    s = xv[..., :1].detach() if spec.centered and spec.across == "sample" and many_positions else shift
    scale = invstd * _param(weight, view, xv.dtype, 1.0)
    offset = ((s - shift) - mean_d) * scale + _param(bias, view, xv.dtype, 0.0)
    if channel_buffers and many_positions:
        s, scale, offset = (_per_channel(t, view) for t in (s, scale, offset))
    y = ((xv - s) * scale + offset).reshape(x.shape).to(x.dtype)
    dtype = stats_dtype or xv.dtype
    shape = spec.stats_shape(view)
    mean = (shift.to(dtype) + mean_d.to(dtype)).reshape(shape)
    return y, mean, var.to(dtype).reshape(shape), invstd.to(dtype).reshape(shape)


def grad_sums(spec: NormSpec, dy, x, mean, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel sum(dy) and sum(dy * (x - mean)), (C,), accumulation dtype."""
    xv, view = _view(spec, x, groups)
    g = dy.reshape(view).to(xv.dtype)
    C = view[1] * view[2]
    return (g.sum(dim=(0, 3)).reshape(C),
            (g * centred(xv, _stat(spec, mean, view))).sum(dim=(0, 3)).reshape(C))


def grad_input(spec: NormSpec, dy, x, mean, invstd, weight, sum_dy, sum_dy_xmu, count: int, groups: int,
               mask=None):
    """Batch norm's dx from the (global) per-channel gradient sums of ``count`` values:
    weight * invstd * (dy - w * (sum_dy / count + (x - mean) * invstd**2 * sum_dy_xmu / count)),
    w the mask's valid positions (None: all)."""
    xv, view = _view(spec, x, groups)
    g = dy.reshape(view).to(xv.dtype)
    xmu, s = centred(xv, _stat(spec, mean, view)), _stat(spec, invstd, view).to(xv.dtype)
    through_stats = _stat(spec, sum_dy, view) / count + xmu * s * s * _stat(spec, sum_dy_xmu, view) / count
    w = mask_weights(spec, x, mask, groups)
    inner = g - (through_stats if w is None else w * through_stats)
    return (inner * s * _param(weight, view, xv.dtype, 1.0)).reshape(x.shape).to(x.dtype)


def backward(spec: NormSpec, dy, x, weight, mean, invstd, groups: int, batch_stats: bool, mask=None):
    """(dx in x's dtype, dweight (C,), dbias (C,) in the accumulation dtype).

    With ``batch_stats`` the statistics depend on x (the closed form:
    dx = invstd * (g - mean(g) - xhat * mean(g * xhat)) over each statistic's values,
    g = dy * weight; with a mask the sums run over every value, are divided by the valid
    count and reach the valid values only); without, they were constants (running
    statistics, (C,))."""
    if not batch_stats:
        spec = spec.with_channel_stats()
    xv, view = _view(spec, x, groups)
    C = view[1] * view[2]
    d = dy.reshape(view).to(xv.dtype)
    s = _stat(spec, invstd, view).to(xv.dtype)
    xhat = centred(xv, _stat(spec, mean, view)) * s
    # one pass of sums over L per (n, g, k); every other sum is over these (N, G, K, 1)
    sum_d, sum_dxhat = d.sum(dim=3, keepdim=True), (d * xhat).sum(dim=3, keepdim=True)
    dweight, dbias = sum_dxhat.sum(dim=0).reshape(C), sum_d.sum(dim=0).reshape(C)
    gamma = _param(weight, view, xv.dtype, 1.0)
    w = mask_weights(spec, x, mask, groups) if batch_stats else None
    if not batch_stats:
        return (d * gamma * s).reshape(x.shape).to(x.dtype), dweight, dbias
    axes = spec.reduce_axes
    if w is None:
        n = spec.count(view)
        g_mean = (gamma * sum_d).sum(dim=axes, keepdim=True) / n if spec.centered else 0.0
        dx = d * gamma - g_mean - xhat * ((gamma * sum_dxhat).sum(dim=axes, keepdim=True) / n)
    else:
        g = d * gamma
        n = valid_count(spec, xv, w)
        through_stats = xhat * (g * xhat).sum(dim=axes, keepdim=True) / n
        if spec.centered:
            through_stats = through_stats + g.sum(dim=axes, keepdim=True) / n
        dx = g - w * through_stats
    return (dx * s).reshape(x.shape).to(x.dtype), dweight, dbias
