"""normgrad's norms as PyTorch operators: ``torch.ops.normgrad.norm_forward`` and
``torch.ops.normgrad.norm_backward`` (``torch.library.custom_op``).

Registered operators are what ``torch.compile`` keeps in its graph (no graph break
at a norm, ``fullgraph=True`` works), what ``torch.export`` writes into a program
(it runs after ``torch.export.load`` in a process that imported ``normgrad.torch``),
and what ``torch.jit.trace`` records. Each has a fake (meta) implementation for
shapes and dtypes, and ``norm_forward`` has its backward registered:

- first order: ``norm_backward``, on the kernels;
- under ``create_graph=True`` (double backward, gradient penalties): in training mode on
  the kernels (no mask), an autograd Function whose forward is ``norm_backward``'s kernels
  and whose backward is the fused double backward (``_double_backward``); otherwise the
  closed form in differentiable torch operations (``_formulas.backward``) with the
  statistics recomputed from x, so autograd can differentiate it again.

Which implementation runs is decided per call from the input:

- CPU float32 / float64: normgrad's fused kernels (``normgrad.kernels``) on
  zero-copy NumPy views; statistics float64;
- anything else (CUDA, bfloat16, float16): ``_formulas`` in torch operations,
  float32 accumulation (float64 for float64 input). ``FORCE_TORCH_OPS = True``
  sends CPU tensors there too (the tests use it to run that path without a GPU).

Operator arguments: x (N, C, *spatial) or (..., D) for features-last norms; weight,
bias (C,) or None; running_mean, running_var (C,) or None (given: batch norm with
these statistics, evaluation mode); norm: a built-in norm's name ('batch', 'layer', ...)
or any ``NormSpec.code``;
groups: G for group norm (else ignored); eps. Statistics (mean, biased var,
invstd) have ``spec.stats_shape``: (C,) or (N, G).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import kernels
from ..core.specs import from_code
from ..core.stats import NormStats
from ..core.validate import NonFiniteError
from . import _double_backward, _formulas
from ._arrays import (as_numpy, channels_innermost, float64_vector, memory_format, numpy_mask,
                      samples_channels_last, wrapped)

FORCE_TORCH_OPS = False


def uses_kernels(x: Tensor) -> bool:
    """True where ``x`` takes normgrad's fused kernels (CPU float32/float64)."""
    return not FORCE_TORCH_OPS and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def path_of(x: Tensor) -> str:
    """In words, the implementation an input takes (modules show it in ``extra_repr``)."""
    if uses_kernels(x):
        return "normgrad kernels"
    return f"torch ops, {str(_formulas.accumulation_dtype(x.dtype)).removeprefix('torch.')} statistics"


def stats_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if uses_kernels(x) else _formulas.accumulation_dtype(x.dtype)


def _stats_shape(x: Tensor, norm: str, groups: int, running: bool) -> tuple[int, ...]:
    spec = from_code(norm)
    if running:
        return (spec.channels(tuple(x.shape)),)
    return spec.stats_shape(spec.view(tuple(x.shape), groups if spec.groups == "given" else None))


def _forward_impl(x: Tensor, weight, bias, running_mean, running_var, norm: str, groups: int, eps: float,
                  mask=None):
    """(y, mean, var, invstd) of one norm, outputs never aliasing inputs. As torch's own
    norms: an empty batch gives an empty output, NaN and Inf propagate (the kernels refuse
    them: such a call takes the torch operations), eps is whatever the module holds."""
    spec = from_code(norm)
    running = None if running_mean is None else (running_mean, running_var)
    if x.numel() == 0:
        return _empty_forward(spec, x, running, groups, eps)
    if uses_kernels(x) and eps > 0:
        try:
            return _kernel_forward(spec, x, weight, bias, running, groups, eps, mask)
        except NonFiniteError:
            pass  # NaN/Inf in x or the parameters: the torch operations propagate them
    return torch_ops_forward(spec, x, weight, bias, running, groups, eps, mask)


def torch_ops_forward(spec, x, weight, bias, running, groups, eps, mask, channel_buffers: bool = False):
    """``_forward_impl`` in torch operations (``_formulas``), statistics in ``stats_dtype(x)``:
    the path of CUDA and half-precision inputs, and what ``torch.compile`` fuses
    (``decompositions``, with ``channel_buffers``)."""
    y, mean, var, invstd = _formulas.forward(spec, x, weight, bias, groups, eps, running, mask, stats_dtype(x),
                                             channel_buffers)
    # clones: an operator's outputs never share memory with its inputs (the running buffers)
    return y.contiguous(memory_format=memory_format(x)), mean.clone(), var.clone(), invstd.clone()


def _kernel_forward(spec, x, weight, bias, running, groups, eps, mask):
    """``_forward_impl`` on the kernels' stages directly: the module checked the arguments
    (a second check in ``kernels.norm_forward`` would cost as much as a small call's work)."""
    C = spec.channels(tuple(x.shape))
    gamma, beta = float64_vector(weight, C, 1.0), float64_vector(bias, C, 0.0)
    fmt = memory_format(x)
    inner = channels_innermost(spec, x, fmt)
    last = None if running is not None or mask is not None else samples_channels_last(spec, x, fmt)
    y = torch.empty_like(x, memory_format=fmt if inner or last else torch.contiguous_format)
    xs, ys = x, y
    if inner is not None:  # channels last: the same memory, channels innermost, no copy
        spec, order = inner
        xs, ys = x.permute(order), y.permute(order)
    elif last is not None:
        xs, ys = x.permute(last), y.permute(last)
    xa = as_numpy(xs)
    G = spec.num_groups(C, groups)
    # fresh float64 copies of the running statistics: the outputs never share the buffers' memory
    fixed = None if running is None else NormStats.of(float64_vector(running[0], C, 0.0), float64_vector(running[1], C, 1.0), eps)
    weights = None if mask is None or fixed is not None else spec.mask_weights(numpy_mask(mask), xa.shape, G, xa.dtype)
    stats = kernels.forward_stages(spec, xa, gamma, beta, G, eps, ys.numpy(), fixed, weights, last is not None)
    if fmt != torch.contiguous_format and not (inner or last):  # computed contiguous, given back as x lies
        y = y.contiguous(memory_format=fmt)
    return y, *(torch.from_numpy(a) for a in stats)


def _empty_forward(spec, x, running, groups, eps):
    """An empty batch: an empty output; the running statistics (evaluation) or zeros."""
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if running is not None:
        mean, var = (r.detach().to(stats_dtype(x)).clone() for r in running)
    else:
        mean = var = torch.zeros(_stats_shape(x, spec.code, groups, False), dtype=stats_dtype(x), device=x.device)
    return y, mean, var.clone(), torch.rsqrt(var + eps)


@torch.library.custom_op("normgrad::norm_forward", mutates_args=())
def norm_forward(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], running_mean: Optional[Tensor],
                 running_var: Optional[Tensor], norm: str, groups: int, eps: float, mask: Optional[Tensor] = None
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(y, mean, var, invstd) of one norm; see the module docstring."""
    return _forward_impl(x, weight, bias, running_mean, running_var, norm, groups, eps, mask)


@norm_forward.register_fake
def _(x, weight, bias, running_mean, running_var, norm, groups, eps, mask=None):
    shape = _stats_shape(x, norm, groups, running_mean is not None)
    stats = [x.new_empty(shape, dtype=stats_dtype(x)) for _ in range(3)]
    return torch.empty_like(x, memory_format=memory_format(x)), *stats


def _backward_impl(dy: Tensor, x: Tensor, weight, mean, var, invstd, norm: str, groups: int, batch_stats: bool,
                   mask=None):
    """(dx, dweight, dbias) of ``_forward_impl``; non-finite values propagate, as there."""
    spec = from_code(norm)
    C = spec.channels(tuple(x.shape))
    if x.numel() == 0:
        zeros = torch.zeros(C, dtype=mean.dtype, device=x.device)
        return torch.zeros(x.shape, dtype=x.dtype, device=x.device), zeros, zeros.clone()
    if uses_kernels(x) and mean.dtype == torch.float64:
        try:
            return _kernel_backward(spec, dy, x, weight, mean, var, invstd, groups, batch_stats, mask)
        except NonFiniteError:
            pass  # NaN/Inf in dy (an overflowing scaled loss), x or the statistics: the torch operations
    return torch_ops_backward(spec, dy, x, weight, mean, invstd, groups, batch_stats, mask)


def torch_ops_backward(spec, dy, x, weight, mean, invstd, groups, batch_stats, mask):
    """``_backward_impl`` in torch operations (``_formulas``); see ``torch_ops_forward``."""
    dx, dweight, dbias = _formulas.backward(spec, dy, x, weight, mean, invstd, groups, batch_stats, mask)
    return dx.contiguous(memory_format=memory_format(x)), dweight.to(mean.dtype), dbias.to(mean.dtype)


def _kernel_backward(spec, dy, x, weight, mean, var, invstd, groups, batch_stats, mask):
    """``_backward_impl`` on the kernels' stages directly (as ``_kernel_forward``)."""
    C = spec.channels(tuple(x.shape))
    fmt = memory_format(x)
    inner = channels_innermost(spec, x, fmt)
    last = None if not batch_stats or mask is not None else samples_channels_last(spec, x, fmt)
    dx = torch.empty_like(x, memory_format=fmt if inner or last else torch.contiguous_format)
    dy, xs, dxs = dy.to(x.dtype), x, dx
    if inner is not None:
        spec, order = inner
        dy, xs, dxs = dy.permute(order), x.permute(order), dx.permute(order)
    elif last is not None:
        dy, xs, dxs = dy.permute(last), x.permute(last), dx.permute(last)
    xa = as_numpy(xs)
    G = spec.num_groups(C, groups)
    stats = NormStats(*(as_numpy(s.to(torch.float64)) for s in (mean, var, invstd)))
    weights = None if mask is None or not batch_stats else spec.mask_weights(numpy_mask(mask), xa.shape, G, xa.dtype)
    dweight, dbias = kernels.backward_stages(spec, as_numpy(dy), xa, float64_vector(weight, C, 1.0), G, stats, dxs.numpy(),
                                             batch_stats, weights, last is not None)
    if fmt != torch.contiguous_format and not (inner or last):
        dx = dx.contiguous(memory_format=fmt)
    return dx, torch.from_numpy(dweight), torch.from_numpy(dbias)


@torch.library.custom_op("normgrad::norm_backward", mutates_args=())
def norm_backward(dy: Tensor, x: Tensor, weight: Optional[Tensor], mean: Tensor, var: Tensor, invstd: Tensor,
                  norm: str, groups: int, batch_stats: bool, mask: Optional[Tensor] = None
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias) of ``norm_forward`` (dweight, dbias (C,) in the statistics'
    dtype, also when weight or bias is None). ``batch_stats=False``: the statistics
    were constants (running statistics)."""
    return _backward_impl(dy, x, weight, mean, var, invstd, norm, groups, batch_stats, mask)


@norm_backward.register_fake
def _(dy, x, weight, mean, var, invstd, norm, groups, batch_stats, mask=None):
    C = from_code(norm).channels(tuple(x.shape))
    return torch.empty_like(x, memory_format=memory_format(x)), mean.new_empty((C,)), mean.new_empty((C,))


def _setup_context(ctx, inputs, output):
    x, weight, bias, running_mean, _, norm, groups, eps, mask = inputs
    _, mean, var, invstd = output
    ctx.mark_non_differentiable(mean, var, invstd)
    ctx.save_for_backward(x, weight, mean, var, invstd, mask)
    ctx.norm, ctx.groups, ctx.eps, ctx.batch_stats = norm, groups, eps, running_mean is None
    ctx.bias_dtype = None if bias is None else bias.dtype


def _gradients(ctx, dy, first_order):
    """(dx, dweight, dbias) for the saved forward; ``first_order`` computes them when no
    graph of the backward is being recorded."""
    x, weight, mean, var, invstd, mask = ctx.saved_tensors
    spec = from_code(ctx.norm)
    if torch.is_grad_enabled() and uses_kernels(x) and _double_backward.applies(ctx, dy, x, mean, mask):
        # create_graph=True on the kernels: a Function whose backward is the fused double backward
        dx, dweight, dbias = _double_backward.gradients(_backward_impl, dy, x, weight, mean, var, invstd, ctx.norm,
                                                        ctx.groups, ctx.eps)
    elif torch.is_grad_enabled():  # create_graph=True: a backward autograd can differentiate again
        if ctx.batch_stats:
            mean, var = _formulas.moments(spec, x, ctx.groups, mask)
            invstd = torch.rsqrt(var + ctx.eps)
        dx, dweight, dbias = _formulas.backward(spec, dy, x, weight, mean, invstd, ctx.groups, ctx.batch_stats, mask)
    else:
        dx, dweight, dbias = first_order(dy, x, weight, mean, var, invstd, ctx.norm, ctx.groups, ctx.batch_stats,
                                         mask)
    dweight = None if weight is None else dweight.to(weight.dtype)
    dbias = None if ctx.bias_dtype is None else dbias.to(ctx.bias_dtype)
    return dx, dweight, dbias, None, None, None, None, None, None


def _backward(ctx, dy, *_stats_grads):
    return _gradients(ctx, dy, torch.ops.normgrad.norm_backward)


norm_forward.register_autograd(_backward, setup_context=_setup_context)


class _Eager(torch.autograd.Function):
    """The operator's forward and backward without PyTorch's dispatcher (~50 us a call
    each way): what eager calls on plain tensors take (``apply_norm``)."""

    @staticmethod
    def forward(ctx, *inputs):
        output = _forward_impl(*inputs)
        _setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, dy, *_stats_grads):
        # batched gradients (is_grads_batched, gradcheck's batched check) run this under vmap:
        # the operator, whose batching rule slices them
        batched = torch._C._are_functorch_transforms_active() or wrapped(dy)
        return _gradients(ctx, dy, torch.ops.normgrad.norm_backward if batched else _backward_impl)


def check_mask(mask, x: Tensor, norm: str) -> None:
    """A padding mask must be a bool tensor of x's shape without the channel axis, with a
    valid position for every statistic (checked eagerly; a compiled graph skips it)."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = valid position), got "
                        f"{mask.dtype if isinstance(mask, Tensor) else type(mask).__name__}")
    spec = from_code(norm)
    axis = x.dim() - 1 if spec.features_last else 1
    want = tuple(x.shape[:axis]) + tuple(x.shape[axis + 1:])
    if tuple(mask.shape) != want:
        raise ValueError(f"mask must have the input's shape without its channel axis, {want}, got {tuple(mask.shape)}")
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or x.numel() == 0:
        return  # the rest is data-dependent: checked where the data is read
    valid = mask.reshape(mask.shape[0], -1).any(dim=1) if spec.across == "sample" else mask.any()
    if not bool(valid.all()):
        raise ValueError("mask has no valid position" + (" for some sample" if spec.across == "sample" else "")
                         + ": the statistics need at least one")


def apply_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, running_mean: Tensor | None,
               running_var: Tensor | None, norm: str, groups: int, eps: float, mask: Tensor | None = None):
    """(y, mean, var, invstd): ``torch.ops.normgrad.norm_forward`` when a graph is being
    captured (torch.compile, torch.export, torch.jit.trace, or any tensor subclass), else
    the same computation called directly (same results, same double backward). ``mask``:
    bool, x's shape without the channel axis, True = valid (statistics over the valid
    positions; unused with running statistics)."""
    if not x.is_floating_point():
        raise TypeError(f"input must be a floating-point tensor, got dtype {x.dtype}")
    if mask is not None:
        check_mask(mask, x, norm)
        if running_mean is not None:
            mask = None
    args = (x, weight, bias, running_mean, running_var, norm, groups, eps, mask)
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return torch.ops.normgrad.norm_forward(*args)
    if torch._C._are_functorch_transforms_active() or any(wrapped(t) for t in (x, weight, bias) if t is not None):
        # torch.func (vmap, grad, jacrev, jvp, functional_call): the norm in torch operations,
        # which every transform goes through
        running = None if running_mean is None else (running_mean, running_var)
        return _formulas.forward(from_code(norm), x, weight, bias, groups, eps, running, mask)
    if type(x) is not Tensor:
        return torch.ops.normgrad.norm_forward(*args)
    return _Eager.apply(*args)


def _move_batch(t, dim, size):
    """``t`` with its vmapped dimension first (broadcast to ``size`` when it has none)."""
    if t is None:
        return None
    if dim is None:
        return t.unsqueeze(0).expand(size, *t.shape)
    return t.movedim(dim, 0)


def _vmapped(op, n_out, info, in_dims, *args):
    """A batching rule by slices: the operator on each slice of the vmapped dimension,
    the results stacked (norms of different slices share nothing)."""
    size = info.batch_size
    moved = [_move_batch(a, d, size) if isinstance(a, Tensor) else a for a, d in zip(args, in_dims)]
    outs = [op(*(m[i] if isinstance(m, Tensor) else m for m in moved)) for i in range(size)]
    return tuple(torch.stack([o[k] for o in outs]) for k in range(n_out)), (0,) * n_out


@norm_forward.register_vmap
def _(info, in_dims, *args):
    return _vmapped(torch.ops.normgrad.norm_forward, 4, info, in_dims, *args)


@norm_backward.register_vmap
def _(info, in_dims, *args):
    return _vmapped(torch.ops.normgrad.norm_backward, 3, info, in_dims, *args)
