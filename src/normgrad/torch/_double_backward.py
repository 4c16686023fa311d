"""The training backward of a norm as an autograd Function, so that a double backward
(``create_graph=True``: gradient penalties) runs on the fused kernels.

``ops._gradients`` takes this path when a graph of the backward is being recorded and the
call suits the kernels (CPU float32/float64, batch statistics, no mask, no torch.func
transform, not compiling); everything else keeps the differentiable ``_formulas``.

- forward: the first-order kernels ``ops`` passes in (``ops._backward_impl``): (dx, dweight, dbias);
- backward: ``kernels.norm_double_backward``: the gradients of dy, x and weight, two
  passes over the data (statistics from the forward's, never recomputed);
- a backward of that backward (third order), or NaN/Inf in its inputs: the vector-Jacobian
  product of ``_formulas.backward`` with the statistics recomputed from x
  (``torch.func.vjp``), which autograd differentiates again.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import kernels
from ..core.specs import from_code
from ..core.validate import NonFiniteError
from . import _formulas
from ._arrays import as_numpy, channels_innermost, float64_vector, memory_format, wrapped


def applies(ctx, dy: Tensor, x: Tensor, mean: Tensor, mask) -> bool:
    """True where the saved forward's backward can be this Function, for a forward that took
    the kernels (``ops`` checks that): batch statistics, no mask, float64 statistics, plain
    tensors outside compile, tracing and torch.func."""
    return (ctx.batch_stats and mask is None and mean.dtype == torch.float64 and x.numel() > 0
            and not torch.compiler.is_compiling() and not torch.jit.is_tracing()
            and not torch._C._are_functorch_transforms_active() and not wrapped(dy) and type(x) is Tensor)


def gradients(first_order, dy: Tensor, x: Tensor, weight, mean, var, invstd, norm: str, groups: int, eps: float):
    """(dx, dweight, dbias) of a training-mode norm, differentiable again on the kernels;
    ``first_order``: the first-order kernels, ``ops._backward_impl``'s signature."""
    return _FusedBackward.apply(dy, x, weight, mean, var, invstd, norm, groups, eps, first_order)


def _arrays(spec, x: Tensor, *tensors: Tensor):
    """(spec, NumPy views of x and each tensor): as x lies in memory (channels-last x as
    channels innermost, as ``ops._kernel_backward`` does), each tensor brought to x's layout and dtype."""
    fmt, inner = memory_format(x), channels_innermost(spec, x)
    ts = [x, *(t.to(x.dtype).contiguous(memory_format=fmt) for t in tensors)]
    if inner is not None:
        spec, order = inner
        ts = [t.permute(order) for t in ts]
    return spec, [as_numpy(t) for t in ts]


def _double_backward(dy, x, weight, mean, var, invstd, norm, groups, a, ga, gb):
    """(ddy, dx, dweight) from the kernels; ``NonFiniteError`` for NaN/Inf anywhere."""
    spec = from_code(norm)
    C = spec.channels(tuple(x.shape))
    stats = tuple(as_numpy(s.to(torch.float64)) for s in (mean, var, invstd))
    ddy = torch.empty_like(x, memory_format=memory_format(x))
    dx = torch.empty_like(x, memory_format=memory_format(x))
    spec, (xs, dys, as_, ddys, dxs) = _arrays(spec, x, dy, a, ddy, dx)
    vec = [None if t is None else float64_vector(t, C, 0.0) for t in (ga, gb)]
    _, _, dweight = kernels.norm_double_backward(spec, dys, xs, float64_vector(weight, C, 1.0), stats, as_, *vec,
                                                 G=groups, out=(ddys, dxs))
    return ddy, dx, torch.from_numpy(dweight)


class _FusedBackward(torch.autograd.Function):
    """(dy, x, weight, mean, var, invstd) -> (dx, dweight, dbias): the first-order kernels
    forward, the double-backward kernels backward."""

    @staticmethod
    def forward(ctx, dy, x, weight, mean, var, invstd, norm, groups, eps, first_order):
        ctx.save_for_backward(dy, x, weight, mean, var, invstd)
        ctx.norm, ctx.groups, ctx.eps = norm, groups, eps
        ctx.set_materialize_grads(False)
        return first_order(dy, x, weight, mean, var, invstd, norm, groups, True)

    @staticmethod
    def backward(ctx, a, ga, gb):
        dy, x, weight, mean, var, invstd = ctx.saved_tensors
        none = (None,) * 7  # mean, var, invstd, norm, groups, eps, first_order
        if a is None and ga is None and gb is None:
            return (None, None, None, *none)
        if not torch.is_grad_enabled():
            try:
                a = torch.zeros_like(x) if a is None else a
                ddy, dx, dweight = _double_backward(dy, x, weight, mean, var, invstd, ctx.norm, ctx.groups, a, ga, gb)
                return ddy.to(dy.dtype), dx, None if weight is None else dweight.to(weight.dtype), *none
            except NonFiniteError:
                pass  # NaN/Inf: the torch operations propagate them
        return *_differentiable_double_backward(ctx, dy, x, weight, a, ga, gb), *none


def _differentiable_double_backward(ctx, dy, x, weight, a, ga, gb):
    """The gradients of dy, x and weight through ``_formulas.backward`` with the statistics
    recomputed from x (``ops._gradients``' own create_graph path), by ``torch.func.vjp``:
    themselves differentiable when a graph is being recorded (the third order), and the
    non-finite case. (A ``torch.autograd.grad`` here would add to x's gradient the path
    through dy, which depends on x too.)"""
    spec = from_code(ctx.norm)

    def first_order(dy, x, *weight):
        mean, var = _formulas.moments(spec, x, ctx.groups)
        return _formulas.backward(spec, dy, x, *(weight or (None,)), mean, torch.rsqrt(var + ctx.eps), ctx.groups,
                                  True)

    outs, vjp = torch.func.vjp(first_order, dy, x, *(() if weight is None else (weight,)))
    upstream = tuple(torch.zeros_like(o) if g is None else g.to(o.dtype) for o, g in zip(outs, (a, ga, gb)))
    return [*vjp(upstream), None][:3]
