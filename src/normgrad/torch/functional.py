"""Batch norm in PyTorch on normgrad's operators, and its synchronized form.

``batch_norm`` (``torch.nn.functional.batch_norm``'s signature) calls
``torch.ops.normgrad.norm_forward`` (``ops.py``; directly in eager): the kernels for CPU
float32/float64 tensors, torch operations in float32 accumulation elsewhere; it is
what ``torch.compile`` and ``torch.export`` see. The running statistics are
updated here, in torch operations, by the one rule (``normgrad.core.running``).

With a communicator (``SyncBatchNorm`` in training on several ranks) the step is
``normgrad.core.sync``'s: an eager ``torch.autograd.Function`` whose statistics are
float64 NumPy arrays exchanged by all-reduce, on the same two implementations.

Shapes: input (N, C, *spatial); weight, bias, running stats (C,).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .. import kernels
from ..core import running
from ..core import validate as v
from ..core.specs import BATCH
from ..core.sync import Communicator, synced_backward, synced_forward, valid_count
from . import _formulas, ops


def _np(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor (a copy only if it is not contiguous; the Function
    makes x and dy contiguous once, so every pass gets a view)."""
    return t.detach().contiguous().numpy()


class _KernelOps:
    """The synchronized step's array operations on CPU float32/float64: the fused kernels."""

    @staticmethod
    def valid_count(x, mask):
        return valid_count(x, None if mask is None else mask.detach().cpu().numpy())

    @staticmethod
    def stats(x, mask):
        return kernels.batchnorm_stats(_np(x), None if mask is None else mask.detach().cpu().numpy())

    @staticmethod
    def normalize(x, mean, invstd, gamma, beta):
        y = torch.empty_like(x, memory_format=torch.contiguous_format)
        kernels.batchnorm_normalize(_np(x), mean, invstd, gamma, beta, out=y.numpy())
        return y

    @staticmethod
    def grad_sums(dy, x, mean):
        return kernels.batchnorm_grad_sums(_np(dy), _np(x), mean)

    @staticmethod
    def grad_input(dy, x, mean, invstd, gamma, sum_dy, sum_dy_xmu, count, mask):
        dx = torch.empty_like(x, memory_format=torch.contiguous_format)
        kernels.batchnorm_grad_input(_np(dy), _np(x), mean, invstd, gamma, sum_dy, sum_dy_xmu, count,
                                     mask=None if mask is None else mask.detach().cpu().numpy(), out=dx.numpy())
        return dx

    @staticmethod
    def copy(x):
        return x.clone()

    @staticmethod
    def zeros_like(x):
        return torch.zeros_like(x)


def _channel(vec: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A (C,) float64 array as a (C,) tensor of like's accumulation dtype, on its device."""
    return torch.as_tensor(vec, device=like.device).to(_formulas.accumulation_dtype(like.dtype))


def _numpy(t: torch.Tensor, what: str) -> np.ndarray:
    a = t.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or Inf (its sums are not finite)")
    return a


class _TorchOps:
    """The synchronized step's array operations on any device and float dtype:
    ``_formulas`` in float32 accumulation (float64 for float64)."""

    @staticmethod
    def valid_count(x, mask):
        if mask is None:
            return x.numel() // x.shape[1]
        ops.check_mask(mask, x, "batch")
        return int(mask.sum())

    @staticmethod
    def stats(x, mask):
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        mean, var = _formulas.moments(BATCH, x.detach(), 1, mask)
        return _numpy(mean, "x"), _numpy(var, "x")

    @staticmethod
    def normalize(x, mean, invstd, gamma, beta):
        return _formulas.normalize(BATCH, x.detach(), _channel(mean, x), _channel(invstd, x), _channel(gamma, x),
                                   _channel(beta, x), 1)

    @staticmethod
    def grad_sums(dy, x, mean):
        sum_dy, sum_dy_xmu = _formulas.grad_sums(BATCH, dy, x.detach(), _channel(mean, x), 1)
        return _numpy(sum_dy, "dy"), _numpy(sum_dy_xmu, "dy")

    @staticmethod
    def grad_input(dy, x, mean, invstd, gamma, sum_dy, sum_dy_xmu, count, mask):
        return _formulas.grad_input(BATCH, dy, x.detach(), *(_channel(a, x) for a in (mean, invstd, gamma, sum_dy,
                                                                                      sum_dy_xmu)), count, 1, mask)

    copy = _KernelOps.copy
    zeros_like = _KernelOps.zeros_like


def _sync_ops(x: torch.Tensor):
    return _KernelOps if ops.uses_kernels(x) else _TorchOps


def _check_channels(name: str, t, C: int) -> None:
    """``t`` must be a (C,) tensor."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or None, got {type(t).__name__}")
    if tuple(t.shape) != (C,):
        raise ValueError(f"{name} must have shape ({C},) to match the input's {C} channels, got {tuple(t.shape)}")


def _vector(name: str, t, C: int, default: float) -> np.ndarray:
    """A per-channel tensor (or None) as a (C,) float64 NumPy array."""
    if t is None:
        return np.full(C, default)
    _check_channels(name, t, C)
    return t.detach().double().cpu().numpy()


def _expected_channels(x, *per_channel) -> int:
    """The channel count the parameters say, else the input's (0 if it has no axis 1)."""
    for t in per_channel:
        if isinstance(t, torch.Tensor) and t.dim() == 1:
            return t.shape[0]
    return x.shape[1] if x.dim() >= 2 else 0


class _SyncedBatchNorm(torch.autograd.Function):
    """Batch norm over the global batch of ``comm``'s ranks (eager only)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, comm, mask):
        x = x.contiguous()  # at most one copy, shared by every pass here and in backward
        ops_ = _sync_ops(x)
        # every check on x happens inside the exchange, so a bad input on one
        # rank stops all ranks instead of leaving them waiting
        C = _expected_channels(x, weight, bias, running_mean, running_var)
        gamma, beta = _vector("weight", weight, C, 1.0), _vector("bias", bias, C, 0.0)
        y, synced = synced_forward(comm, ops_, x, C, gamma, beta, eps, mask)
        if running_mean is not None and running_var is not None:
            _check_channels("running_mean", running_mean, C)
            _check_channels("running_var", running_var, C)
            update_running(running_mean, running_var, torch.as_tensor(synced.mean), torch.as_tensor(synced.var),
                            synced.count, momentum)
        ctx.save_for_backward(x)
        param_dtypes = (None if weight is None else weight.dtype, None if bias is None else bias.dtype)
        ctx.saved = (gamma, synced, comm, param_dtypes)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        dy = dy.contiguous()  # often an expanded view (the gradient of a sum): copied once, not per pass
        gamma, synced, comm, (weight_dtype, bias_dtype) = ctx.saved
        dx, dgamma, dbeta = synced_backward(comm, _sync_ops(x), dy, x, synced, gamma)
        dweight = None if weight_dtype is None else torch.as_tensor(dgamma, dtype=weight_dtype, device=x.device)
        dbias = None if bias_dtype is None else torch.as_tensor(dbeta, dtype=bias_dtype, device=x.device)
        return dx, dweight, dbias, None, None, None, None, None, None


def update_running(running_mean, running_var, mean, var, count, momentum: float | None,
                   num_batches_tracked=1, centered: bool = True, across: str = "batch") -> None:
    """The TORCH rule (``core.running``) in place: running += w * (batch - running), w the
    momentum (None: 1 / num_batches_tracked), with the unbiased batch variance from
    ``count`` values (an uncentred norm's mean square as it is; per-sample statistics
    averaged over the batch, ``count`` then a number or one per sample)."""
    w = running.TORCH.weight(momentum, num_batches_tracked)
    if isinstance(count, torch.Tensor):  # valid counts of a mask: in the statistics' dtype, not int division's
        count = count.to(var.dtype)
    mean, var = running.batch_moments(running.TORCH, mean, var, count, across, centered)
    with torch.no_grad():
        running_mean.lerp_(mean.to(running_mean), w)
        running_var.lerp_(var.to(running_var), w)


def check_batch_norm(input, weight, bias, running_mean, running_var, training: bool, mask=None,
                     eps: float = 1e-5) -> None:
    """Every check ``batch_norm`` makes of its tensors, so a module can make them before it
    changes any state: input (N, C, *spatial) floating point, the others (C,) or None,
    mask None or bool (N, *spatial), more than one (valid) value per channel in training
    (an empty batch passes, as in torch), eps positive in training, running_var >= 0 in
    evaluation."""
    if input.dim() < 2:
        raise ValueError(f"expected input of shape (N, C, ...), got {tuple(input.shape)}")
    if not input.is_floating_point():
        raise TypeError(f"input must be a floating-point tensor, got dtype {input.dtype}")
    C = input.shape[1]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        if t is not None:
            _check_channels(name, t, C)
    if training and not eps > 0:
        raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    if mask is not None:
        ops.check_mask(mask, input, "batch")
    tracing = torch.compiler.is_compiling() or torch.jit.is_tracing()  # data-dependent checks wait for the data
    if training and input.numel() and mask is None:
        v.enough_values(input.numel() // C, f"input of shape {tuple(input.shape)}")
    elif training and input.numel() and not tracing:
        v.enough_values(int(mask.sum()), f"input of shape {tuple(input.shape)} with its mask")
    elif not training and not tracing and bool((running_var < 0).any()):
        raise ValueError("running_var must be >= 0 everywhere")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5, *, comm: Communicator | None = None, mask=None):
    """``torch.nn.functional.batch_norm`` on normgrad's operators (same arguments).

    input: (N, C, *spatial); weight, bias, running_mean, running_var: (C,) or None.
    In training, the running statistics (when given) are updated in place with the
    batch mean and the unbiased batch variance. ``comm`` (keyword only) makes the
    training statistics those of the global batch over its ranks (eager only,
    differentiable once). Otherwise differentiable twice (``create_graph=True``).
    ``mask`` (keyword only): None, or bool (N, *spatial), True = valid position: in
    training the statistics (and the running averages, unbiased by the valid count) are
    those of the valid positions, every position normalized with them.
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    eps = v.real_value("eps", eps)
    momentum = v.momentum_value(momentum)
    if not training and (running_mean is None or running_var is None):
        raise ValueError("running_mean and running_var are needed when training=False")
    if comm is not None and training:  # checked inside the exchange, on every rank at once
        return _SyncedBatchNorm.apply(input, weight, bias, running_mean, running_var, momentum, eps, comm, mask)
    check_batch_norm(input, weight, bias, running_mean, running_var, training, mask, eps)
    return checked_batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, mask)


def checked_batch_norm(input, running_mean, running_var, weight, bias, training: bool, momentum: float | None,
                       eps: float, mask=None):
    """``batch_norm`` on arguments that passed ``check_batch_norm`` (and eps and momentum
    their checks); momentum None with training: no running update."""
    if training:
        count = input.numel() // input.shape[1] if mask is None else mask.sum()
        y, mean, var, _ = ops.apply_norm(input, weight, bias, None, None, "batch", 1, eps, mask)
        if running_mean is not None and running_var is not None and momentum is not None and input.numel():
            update_running(running_mean, running_var, mean, var, count, momentum)
        return y
    return ops.apply_norm(input, weight, bias, running_mean, running_var, "batch", 1, eps)[0]
