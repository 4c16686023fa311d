"""Batch norm as a ``torch.autograd.Function`` on normgrad's kernels.

CPU float32/float64 tensors go through ``normgrad.kernels`` (zero-copy NumPy
views); other devices and dtypes through the same formulas in torch operations,
in float64. Either way the per-channel statistics are float64 NumPy arrays, so
the synchronized step (``normgrad.core.sync``) and the running-statistics rule
(``normgrad.core.running``) are the ones the NumPy modules use.

Shapes: input (N, C, *spatial); weight, bias, running stats (C,).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .. import kernels
from ..core import running
from ..core import validate as v
from ..core.sync import Communicator, SyncedStats, synced_backward, synced_forward

# Tests set this to run the device-generic path (the one CUDA tensors take) on CPU.
FORCE_TORCH_OPS = False


def _np(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor (a copy only if it is not contiguous; the Function
    makes x and dy contiguous once, so every pass gets a view)."""
    return t.detach().contiguous().numpy()


def _channel(vec: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A (C,) float64 array as a float64 tensor on like's device, shaped (1, C, 1, ...)."""
    return torch.as_tensor(vec, dtype=torch.float64, device=like.device).view(1, -1, *[1] * (like.dim() - 2))


def _reduce_dims(x: torch.Tensor) -> list[int]:
    return [0, *range(2, x.dim())]


class _KernelOps:
    """CPU float32/float64: the fused Numba kernels on NumPy views."""

    @staticmethod
    def forward_train(x, gamma, beta, eps):
        y = torch.empty_like(x, memory_format=torch.contiguous_format)
        _, stats = kernels.batchnorm_forward(_np(x), gamma, beta, training=True, eps=eps, out=y.numpy())
        return y, stats.mean, stats.var

    @staticmethod
    def forward_eval(x, gamma, beta, running_mean, running_var, eps):
        y = torch.empty_like(x, memory_format=torch.contiguous_format)
        kernels.batchnorm_forward(_np(x), gamma, beta, training=False, running_mean=running_mean,
                                  running_var=running_var, eps=eps, out=y.numpy())
        return y

    @staticmethod
    def stats(x):
        return kernels.batchnorm_stats(_np(x))

    @staticmethod
    def normalize(x, mean, invstd, gamma, beta):
        y = torch.empty_like(x, memory_format=torch.contiguous_format)
        kernels.batchnorm_normalize(_np(x), mean, invstd, gamma, beta, out=y.numpy())
        return y

    @staticmethod
    def backward(dy, x, gamma, mean, invstd, var, training):
        dx = torch.empty_like(x, memory_format=torch.contiguous_format)
        _, dgamma, dbeta = kernels.batchnorm_backward(_np(dy), _np(x), gamma, (mean, var, invstd),
                                                      training=training, out=dx.numpy())
        return dx, dgamma, dbeta

    @staticmethod
    def grad_sums(dy, x, mean):
        return kernels.batchnorm_grad_sums(_np(dy), _np(x), mean)

    @staticmethod
    def grad_input(dy, x, mean, invstd, gamma, sum_dy, sum_dy_xmu, count):
        dx = torch.empty_like(x, memory_format=torch.contiguous_format)
        kernels.batchnorm_grad_input(_np(dy), _np(x), mean, invstd, gamma, sum_dy, sum_dy_xmu, count,
                                     out=dx.numpy())
        return dx

    @staticmethod
    def copy(x):
        return x.clone()

    @staticmethod
    def zeros_like(x):
        return torch.zeros_like(x)


class _TorchOps:
    """Any device or floating dtype: the same formulas in torch operations, in float64."""

    @staticmethod
    def stats(x):
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        var, mean = torch.var_mean(x.detach().double(), dim=_reduce_dims(x), correction=0)
        mean, var = mean.cpu().numpy(), var.cpu().numpy()
        if not (np.isfinite(mean).all() and np.isfinite(var).all()):
            raise ValueError("x contains NaN or Inf (its batch statistics are not finite)")
        return mean, var

    @staticmethod
    def normalize(x, mean, invstd, gamma, beta):
        return ((x.detach().double() - _channel(mean, x)) * _channel(invstd * gamma, x) + _channel(beta, x)).to(x.dtype)

    @classmethod
    def forward_train(cls, x, gamma, beta, eps):
        mean, var = cls.stats(x)
        return cls.normalize(x, mean, 1.0 / np.sqrt(var + eps), gamma, beta), mean, var

    @classmethod
    def forward_eval(cls, x, gamma, beta, running_mean, running_var, eps):
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or Inf")
        return cls.normalize(x, running_mean, 1.0 / np.sqrt(running_var + eps), gamma, beta)

    @staticmethod
    def grad_sums(dy, x, mean):
        dy64 = dy.double()
        dims = _reduce_dims(x)
        sums = dy64.sum(dims).cpu().numpy(), (dy64 * (x.detach().double() - _channel(mean, x))).sum(dims).cpu().numpy()
        if not (np.isfinite(sums[0]).all() and np.isfinite(sums[1]).all()):
            raise ValueError("dy contains NaN or Inf (its sums are not finite)")
        return sums

    @staticmethod
    def grad_input(dy, x, mean, invstd, gamma, sum_dy, sum_dy_xmu, count):
        xmu = x.detach().double() - _channel(mean, x)
        inner = dy.double() - _channel(sum_dy / count, x) - xmu * _channel(sum_dy_xmu * invstd**2 / count, x)
        return (_channel(gamma * invstd, x) * inner).to(x.dtype)

    copy = _KernelOps.copy
    zeros_like = _KernelOps.zeros_like

    @classmethod
    def backward(cls, dy, x, gamma, mean, invstd, var, training):
        sum_dy, sum_dy_xmu = cls.grad_sums(dy, x, mean)
        # in evaluation the statistics were constants: no path through the mean or the variance
        paths = (sum_dy, sum_dy_xmu) if training else (np.zeros_like(sum_dy),) * 2
        dx = cls.grad_input(dy, x, mean, invstd, gamma, *paths, x.numel() // x.shape[1])
        return dx, sum_dy_xmu * invstd, sum_dy


def _ops(x: torch.Tensor):
    if not FORCE_TORCH_OPS and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return _KernelOps
    return _TorchOps


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


class _BatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps, comm):
        x = x.contiguous()  # at most one copy, shared by every pass here and in backward
        ops = _ops(x)
        if training and comm is not None:
            # every check on x happens inside the exchange, so a bad input on one
            # rank stops all ranks instead of leaving them waiting
            C = _expected_channels(x, weight, bias, running_mean, running_var)
            gamma, beta = _vector("weight", weight, C, 1.0), _vector("bias", bias, C, 0.0)
            y, synced = synced_forward(comm, ops, x, C, gamma, beta, eps)
            count, mean, var = synced.count, synced.mean, synced.var
        else:
            C = x.shape[1]
            count = x.numel() // C
            gamma, beta = _vector("weight", weight, C, 1.0), _vector("bias", bias, C, 0.0)
            if training:
                v.enough_values(count, f"input of shape {tuple(x.shape)}")
                y, mean, var = ops.forward_train(x, gamma, beta, eps)
            else:
                mean = _vector("running_mean", running_mean, C, 0.0)
                var = _vector("running_var", running_var, C, 1.0)
                if (var < 0).any():
                    raise ValueError("running_var must be >= 0 everywhere")
                y = ops.forward_eval(x, gamma, beta, mean, var, eps) if x.numel() else x.clone()
        if training and running_mean is not None and running_var is not None:
            _check_channels("running_mean", running_mean, C)
            _check_channels("running_var", running_var, C)
            with torch.no_grad():  # the one rule, on tensors, in float64
                batch = [torch.as_tensor(a, device=running_mean.device) for a in (mean, var)]
                new_mean, new_var = running.updated(running.TORCH, running_mean.double(), running_var.double(),
                                                    *batch, count, momentum)
                running_mean.copy_(new_mean)
                running_var.copy_(new_var)
        ctx.save_for_backward(x)
        param_dtypes = (None if weight is None else weight.dtype, None if bias is None else bias.dtype)
        ctx.saved = (gamma, mean, var, 1.0 / np.sqrt(var + eps), count, training, comm, param_dtypes)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        dy = dy.contiguous()  # often an expanded view (the gradient of a sum): copied once, not per pass
        gamma, mean, var, invstd, count, training, comm, (weight_dtype, bias_dtype) = ctx.saved
        ops = _ops(x)
        C = x.shape[1]
        if training and comm is not None:
            stats = SyncedStats(count, mean, var, invstd)
            dx, dgamma, dbeta = synced_backward(comm, ops, dy, x, stats, gamma)
        elif x.numel():
            dx, dgamma, dbeta = ops.backward(dy, x, gamma, mean, invstd, var, training)
        else:
            dx, dgamma, dbeta = torch.zeros_like(x), np.zeros(C), np.zeros(C)
        dweight = None if weight_dtype is None else torch.as_tensor(dgamma, dtype=weight_dtype, device=x.device)
        dbias = None if bias_dtype is None else torch.as_tensor(dbeta, dtype=bias_dtype, device=x.device)
        return dx, dweight, dbias, None, None, None, None, None, None


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5, *, comm: Communicator | None = None):
    """``torch.nn.functional.batch_norm`` on normgrad's kernels (same arguments).

    input: (N, C, *spatial); weight, bias, running_mean, running_var: (C,) or None.
    In training, the running statistics (when given) are updated in place with the
    batch mean and the unbiased batch variance. ``comm`` (keyword only) makes the
    training statistics those of the global batch over its ranks.
    Differentiable once with respect to input, weight and bias.
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if comm is None or not training:  # else checked inside the exchange, on every rank at once
        if input.dim() < 2:
            raise ValueError(f"expected input of shape (N, C, ...), got {tuple(input.shape)}")
        if not input.is_floating_point():
            raise TypeError(f"input must be a floating-point tensor, got dtype {input.dtype}")
    eps = v.eps_value(eps)
    momentum = v.momentum_value(momentum)
    if not training and (running_mean is None or running_var is None):
        raise ValueError("running_mean and running_var are needed when training=False")
    return _BatchNormFunction.apply(input, weight, bias, running_mean, running_var, bool(training), momentum, eps,
                                    comm)
