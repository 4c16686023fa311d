"""Every norm's forward and backward in torch operations, for any device and float dtype.

The path CUDA tensors, bfloat16 and float16 take (and CPU tensors when forced), read
from the norm's ``NormSpec`` like the kernels: x is viewed as (N, G, K, L) and the
statistics reduce over ``spec.reduce_axes``. Arithmetic runs in the *accumulation
dtype*: float64 for float64 input, float32 otherwise (float64 would double the
memory traffic and is slow on GPUs). ``torch.var_mean`` gives stable statistics
(a two-pass or Welford reduction, never E[x^2] - E[x]^2).

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


def moments(spec: NormSpec, x: torch.Tensor, groups: int, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, biased var) of ``spec.stats_shape`` in the accumulation dtype, over the valid
    positions of ``mask`` (None: all); RMS norm's mean is 0 and its var the mean of squares."""
    xv, view = _view(spec, x, groups)
    shape = spec.stats_shape(view)
    w = mask_weights(spec, x, mask, groups)
    axes = spec.reduce_axes
    if w is None and spec.centered:
        var, mean = torch.var_mean(xv, dim=axes, correction=0)
    elif w is None:
        var = xv.square().mean(dim=axes)
        mean = torch.zeros_like(var)
    else:  # two passes over the valid values: the mean, then the centred squares
        n = valid_count(spec, xv, w)
        mean = (xv * w).sum(dim=axes, keepdim=True) / n if spec.centered else torch.zeros_like(n)
        var = ((xv - mean).square() * w).sum(dim=axes, keepdim=True) / n
    return mean.reshape(shape), var.reshape(shape)


def normalize(spec: NormSpec, x, mean, invstd, weight, bias, groups: int) -> torch.Tensor:
    """y = (x - mean) * invstd * weight + bias, in x's shape and dtype."""
    xv, view = _view(spec, x, groups)
    scale = _stat(spec, invstd, view) * _param(weight, view, xv.dtype, 1.0)
    y = (xv - _stat(spec, mean, view)) * scale + _param(bias, view, xv.dtype, 0.0)
    return y.reshape(x.shape).to(x.dtype)


def forward(spec: NormSpec, x, weight, bias, groups: int, eps: float, running=None, mask=None):
    """(y, mean, var, invstd): batch statistics (over the mask's valid positions), or
    ``running`` = (mean, var) (C,) when given."""
    if running is None:
        mean, var = moments(spec, x, groups, mask)
    else:
        acc = accumulation_dtype(x.dtype)
        mean, var = (r.to(acc) for r in running)
        spec = spec.with_channel_stats()
    invstd = torch.rsqrt(var + eps)
    return normalize(spec, x, mean, invstd, weight, bias, groups), mean, var, invstd


def grad_sums(spec: NormSpec, dy, x, mean, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel sum(dy) and sum(dy * (x - mean)), (C,), accumulation dtype."""
    xv, view = _view(spec, x, groups)
    g = dy.reshape(view).to(xv.dtype)
    C = view[1] * view[2]
    return (g.sum(dim=(0, 3)).reshape(C),
            (g * (xv - _stat(spec, mean, view))).sum(dim=(0, 3)).reshape(C))


def grad_input(spec: NormSpec, dy, x, mean, invstd, weight, sum_dy, sum_dy_xmu, count: int, groups: int,
               mask=None):
    """Batch norm's dx from the (global) per-channel gradient sums of ``count`` values:
    weight * invstd * (dy - w * (sum_dy / count + (x - mean) * invstd**2 * sum_dy_xmu / count)),
    w the mask's valid positions (None: all)."""
    xv, view = _view(spec, x, groups)
    g = dy.reshape(view).to(xv.dtype)
    m, s = _stat(spec, mean, view), _stat(spec, invstd, view)
    through_stats = _stat(spec, sum_dy, view) / count + (xv - m) * s * s * _stat(spec, sum_dy_xmu, view) / count
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
    s = _stat(spec, invstd, view)
    xhat = (xv - _stat(spec, mean, view)) * s
    dweight = (d * xhat).sum(dim=(0, 3)).reshape(C)
    dbias = d.sum(dim=(0, 3)).reshape(C)
    g = d * _param(weight, view, xv.dtype, 1.0)
    w = mask_weights(spec, x, mask, groups) if batch_stats else None
    if batch_stats and w is None:
        axes = spec.reduce_axes
        centred = g.mean(dim=axes, keepdim=True) if spec.centered else 0.0
        g = g - centred - xhat * (g * xhat).mean(dim=axes, keepdim=True)
    elif batch_stats:
        axes = spec.reduce_axes
        n = valid_count(spec, xv, w)
        through_stats = xhat * (g * xhat).sum(dim=axes, keepdim=True) / n
        if spec.centered:
            through_stats = through_stats + g.sum(dim=axes, keepdim=True) / n
        g = g - w * through_stats
    return (g * s).reshape(x.shape).to(x.dtype), dweight, dbias
