"""Drop-in ``torch.nn`` norms beyond batch norm, on normgrad's operators, and the two
batch-norm variants torch lacks.

``LayerNorm``, ``GroupNorm``, ``InstanceNorm1d/2d`` and ``RMSNorm`` subclass their
``torch.nn`` counterparts (same arguments, parameters, buffers, state-dict keys) and
replace only ``forward``, which calls ``ops.apply_norm``: the kernels for CPU
float32/float64, torch operations elsewhere; compile, export and double backward as
for batch norm. ``BatchRenorm1d/2d`` and ``GhostBatchNorm1d/2d`` extend normgrad's
``BatchNorm1d/2d`` (batch norm's state dict). ``convert_norms`` swaps all of them
into a model.
"""

from __future__ import annotations

from math import prod

import torch

from .functional import _update_running
from .modules import BatchNorm1d, BatchNorm2d, BatchNorm3d, ReportsPath, swap_exact
from .ops import apply_norm


def _trailing(module, input: torch.Tensor) -> int:
    """D = prod(normalized_shape), after checking input ends with normalized_shape."""
    shape = tuple(module.normalized_shape)
    if tuple(input.shape[input.dim() - len(shape):]) != shape or input.dim() < len(shape):
        raise ValueError(f"expected input of shape (..., {', '.join(map(str, shape))}), got {tuple(input.shape)}")
    return prod(shape)


def _flat(p: torch.Tensor | None) -> torch.Tensor | None:
    return None if p is None else p.reshape(-1)


class LayerNorm(ReportsPath, torch.nn.LayerNorm):
    """``torch.nn.LayerNorm`` on normgrad's operators. input: (..., *normalized_shape)."""

    def forward(self, input):
        self._note_path(input)
        D = _trailing(self, input)
        flat = input.reshape(*input.shape[:input.dim() - len(self.normalized_shape)], D)
        y = apply_norm(flat, _flat(self.weight), _flat(self.bias), None, None, "layer", 1, self.eps)[0]
        return y.reshape(input.shape)


class RMSNorm(ReportsPath, torch.nn.RMSNorm):
    """``torch.nn.RMSNorm`` on normgrad's operators; eps None is the input dtype's
    machine epsilon. input: (..., *normalized_shape)."""

    def forward(self, input):
        self._note_path(input)
        D = _trailing(self, input)
        flat = input.reshape(*input.shape[:input.dim() - len(self.normalized_shape)], D)
        eps = torch.finfo(input.dtype).eps if self.eps is None else self.eps
        y = apply_norm(flat, _flat(self.weight), None, None, None, "rms", 1, eps)[0]
        return y.reshape(input.shape)


class GroupNorm(ReportsPath, torch.nn.GroupNorm):
    """``torch.nn.GroupNorm`` on normgrad's operators. input: (N, C, *)."""

    def forward(self, input):
        self._note_path(input)
        if input.dim() < 2 or input.shape[1] != self.num_channels:
            raise ValueError(f"expected input of shape (N, {self.num_channels}, ...), got {tuple(input.shape)}")
        return apply_norm(input, self.weight, self.bias, None, None, "group", self.num_groups, self.eps)[0]


class _InstanceNorm(ReportsPath):
    """``torch.nn.InstanceNorm*d``'s forward: instance statistics (running averages of
    them updated in training with ``track_running_stats``; momentum None: no update),
    running statistics in evaluation when tracked. Unbatched input (C, *spatial) too."""

    def forward(self, input):
        self._note_path(input)
        self._check_input_dim(input)
        unbatched = input.dim() == self._get_no_batch_dim()
        x = input.unsqueeze(0) if unbatched else input
        if x.shape[1] != self.num_features:
            raise ValueError(f"expected input of shape (N, {self.num_features}, ...), got {tuple(input.shape)}")
        if self.track_running_stats and not self.training:
            y = apply_norm(x, self.weight, self.bias, self.running_mean, self.running_var, "batch", 1, self.eps)[0]
        else:
            y, mean, var, _ = apply_norm(x, self.weight, self.bias, None, None, "instance", 1, self.eps)
            if self.training and self.track_running_stats and self.momentum is not None:
                count = x[0, 0].numel()
                _update_running(self.running_mean, self.running_var, mean.mean(0), var.mean(0), count, self.momentum)
        return y.squeeze(0) if unbatched else y


class InstanceNorm1d(_InstanceNorm, torch.nn.InstanceNorm1d):
    """``torch.nn.InstanceNorm1d`` on normgrad's operators. input: (N, C, L) or (C, L)."""


class InstanceNorm2d(_InstanceNorm, torch.nn.InstanceNorm2d):
    """``torch.nn.InstanceNorm2d`` on normgrad's operators. input: (N, C, H, W) or (C, H, W)."""


class _BatchRenorm:
    """Batch renormalization (Ioffe 2017) in training with running statistics:
    y = weight * (xhat * r + d) + bias, r = clip(s_B / s, 1/rmax, rmax),
    d = clip((m_B - running_mean) / s, -dmax, dmax), s = sqrt(running_var + eps), r and
    d detached; batch norm otherwise. State dict: batch norm's."""

    def __init__(self, num_features: int, rmax: float = 3.0, dmax: float = 5.0, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        if not 1.0 <= float(rmax) < float("inf"):
            raise ValueError(f"rmax must be a finite number >= 1, got {rmax}")
        if not 0.0 <= float(dmax) < float("inf"):
            raise ValueError(f"dmax must be a finite number >= 0, got {dmax}")
        self.rmax, self.dmax = float(rmax), float(dmax)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rmax={self.rmax}, dmax={self.dmax}"

    def forward(self, input):
        if not (self.training and self.track_running_stats):
            return super().forward(input)
        self._note_path(input)
        self._check_input_dim(input)
        C = self.num_features
        count = input.numel() // C
        xhat, mean, var, _ = apply_norm(input, None, None, None, None, "batch", 1, self.eps)
        s = torch.sqrt(self.running_var.to(var) + self.eps)
        r = (torch.sqrt(var + self.eps) / s).clamp(1 / self.rmax, self.rmax)
        d = ((mean - self.running_mean.to(mean)) / s).clamp(-self.dmax, self.dmax)
        shape = (1, C) + (1,) * (input.dim() - 2)
        weight = torch.ones(C, dtype=input.dtype, device=input.device) if self.weight is None else self.weight
        bias = torch.zeros(C, dtype=input.dtype, device=input.device) if self.bias is None else self.bias
        y = xhat * (weight * r.to(weight)).reshape(shape) + (weight * d.to(weight) + bias).reshape(shape)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        _update_running(self.running_mean, self.running_var, mean, var, count, momentum)
        return y


class BatchRenorm1d(_BatchRenorm, BatchNorm1d):
    """Batch renormalization over (N, C) or (N, C, L)."""


class BatchRenorm2d(_BatchRenorm, BatchNorm2d):
    """Batch renormalization over (N, C, H, W)."""


class _GhostBatchNorm:
    """Ghost batch norm: in training, consecutive chunks of ``virtual_batch_size``
    examples normalized with their own statistics, the running statistics updated once
    per chunk in order; batch norm in evaluation. State dict: batch norm's."""

    def __init__(self, num_features: int, virtual_batch_size: int, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        if isinstance(virtual_batch_size, bool) or not isinstance(virtual_batch_size, int):
            raise TypeError(f"virtual_batch_size must be an int, got {type(virtual_batch_size).__name__}")
        if virtual_batch_size < 2:
            raise ValueError(f"virtual_batch_size must be >= 2, got {virtual_batch_size}")
        self.virtual_batch_size = virtual_batch_size

    def extra_repr(self) -> str:
        return super().extra_repr() + f", virtual_batch_size={self.virtual_batch_size}"

    def forward(self, input):
        if not self.training:
            return super().forward(input)
        return torch.cat([super(_GhostBatchNorm, self).forward(chunk)
                          for chunk in input.split(self.virtual_batch_size)])


class GhostBatchNorm1d(_GhostBatchNorm, BatchNorm1d):
    """Ghost batch norm over (N, C) or (N, C, L)."""


class GhostBatchNorm2d(_GhostBatchNorm, BatchNorm2d):
    """Ghost batch norm over (N, C, H, W)."""


TORCH_TO_NORMGRAD = {
    torch.nn.BatchNorm1d: BatchNorm1d, torch.nn.BatchNorm2d: BatchNorm2d, torch.nn.BatchNorm3d: BatchNorm3d,
    torch.nn.LayerNorm: LayerNorm, torch.nn.GroupNorm: GroupNorm, torch.nn.RMSNorm: RMSNorm,
    torch.nn.InstanceNorm1d: InstanceNorm1d, torch.nn.InstanceNorm2d: InstanceNorm2d,
}


def convert_norms(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every ``torch.nn`` BatchNorm1d/2d/3d, LayerNorm, GroupNorm, RMSNorm and
    InstanceNorm1d/2d in ``module`` by normgrad's class of the same kind, sharing its
    parameters and buffers. Returns the converted module."""
    return swap_exact(module, TORCH_TO_NORMGRAD)
