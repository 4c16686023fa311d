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

from ..core import running, variants
from ..core.specs import INSTANCE, NormSpec
from ..core import validate as v
from .functional import update_running
from .modules import BatchNorm1d, BatchNorm2d, BatchNorm3d, ReportsPath, swap_exact
from .ops import apply_norm, memory_format


def _trailing(module, input: torch.Tensor) -> int:
    """D = prod(normalized_shape), after checking input ends with normalized_shape."""
    v.trailing_shape(tuple(input.shape), tuple(module.normalized_shape))
    return prod(module.normalized_shape)


def _counts(spec, input, groups, mask):
    """Values behind each statistic: a number; with a mask, the valid positions as a tensor
    (0-d across the batch, (N, 1) per sample)."""
    view = spec.view(tuple(input.shape), groups)
    if mask is None:
        return spec.count(view)
    if spec.across == "batch":
        return mask.sum()
    return mask.reshape(view[0], view[3]).sum(dim=1, keepdim=True) * view[2]


def _check_count(count, centered: bool, input) -> None:
    """``running.check_count`` before any buffer changes; a mask's counts only eagerly (they
    are data-dependent while a compiler traces)."""
    if isinstance(count, torch.Tensor):
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return
        count = count.cpu().numpy()
    running.check_count(count, centered, f"input of shape {tuple(input.shape)}")


def _flat(p: torch.Tensor | None) -> torch.Tensor | None:
    """A parameter as (C,); a 1-D one as it is (no view, no extra node in the backward)."""
    return p if p is None or p.dim() == 1 else p.reshape(-1)


def _features_last(module, input: torch.Tensor) -> torch.Tensor:
    """input as (..., D), D = prod(normalized_shape); a 1-D normalized_shape leaves it as it is."""
    D = _trailing(module, input)
    if len(module.normalized_shape) == 1:
        return input
    return input.reshape(*input.shape[:input.dim() - len(module.normalized_shape)], D)


def _as_input(y: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    """The output in the input's shape and memory format."""
    if y.shape != input.shape:
        y = y.reshape(input.shape)
    return y.contiguous(memory_format=memory_format(input))


class Norm(ReportsPath, torch.nn.Module):
    """Any declared norm (``normgrad.NormSpec``) as a ``torch.nn.Module`` on normgrad's
    operators: the kernels for CPU float32/float64, torch operations elsewhere;
    ``torch.compile`` (no graph break), ``torch.export`` and double backward as for the
    built-in norms.

    Parameters weight and bias (C,) when ``affine``; with ``track_running_stats``
    (default: the spec's ``running_stats``) buffers running_mean, running_var and
    num_batches_tracked, updated in training (torch's rules, ``core.running.TORCH``;
    an uncentred norm averages its mean square) and used in evaluation.
    ``num_groups``: G, for a spec whose groups are given.
    input: (N, C, *spatial), or (..., C) for a features-last spec.
    """

    def __init__(self, spec: NormSpec, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool | None = None, num_groups: int | None = None,
                 device=None, dtype=None):
        super().__init__()
        if not isinstance(spec, NormSpec):
            raise TypeError(f"spec must be a NormSpec, got {type(spec).__name__}")
        self.spec, self.num_features = spec, v.positive_integer("num_features", num_features)
        self.eps = v.eps_value(eps)
        self.momentum = None if momentum is None else v.momentum_value(momentum)
        self.groups = spec.num_groups(num_features, num_groups) if spec.groups == "given" else 1
        self.affine = bool(affine)
        self.track_running_stats = spec.running_stats if track_running_stats is None else bool(track_running_stats)
        kw = {"device": device, "dtype": dtype}
        self.weight = torch.nn.Parameter(torch.ones(num_features, **kw)) if affine else None
        self.bias = torch.nn.Parameter(torch.zeros(num_features, **kw)) if affine else None
        if self.track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **kw))
            self.register_buffer("running_var", torch.ones(num_features, **kw))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))

    def extra_repr(self) -> str:
        return (f"{self.spec.name}, {self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}" + super().extra_repr())

    def forward(self, input, mask=None):
        """input: (N, C, *spatial), or (..., C) features last; mask: None, or bool of the
        input's shape without the channel axis, True = valid (statistics over the valid
        positions, every position normalized with them)."""
        self._note_path(input)
        if input.dim() < 2 or self.spec.channels(tuple(input.shape)) != self.num_features:
            layout = f"(..., {self.num_features})" if self.spec.features_last else f"(N, {self.num_features}, ...)"
            raise ValueError(f"expected input of shape {layout}, got {tuple(input.shape)}")
        if not (self.training or not self.track_running_stats):
            return apply_norm(input, self.weight, self.bias, self.running_mean, self.running_var, self.spec.code,
                              self.groups, self.eps, mask)[0]
        tracking = self.training and self.track_running_stats
        if tracking:
            count = _counts(self.spec, input, self.groups, mask)
            _check_count(count, self.spec.centered, input)
        y, mean, var, _ = apply_norm(input, self.weight, self.bias, None, None, self.spec.code, self.groups, self.eps,
                                     mask)
        if tracking:
            self._track(count, mean, var)
        return y

    def _track(self, count, mean, var) -> None:
        if self.spec.across == "batch":
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
            update_running(self.running_mean, self.running_var, mean, var, count, self.momentum,
                           self.num_batches_tracked, self.spec.centered)
        elif self.momentum is not None:  # per sample: torch's instance-norm rule
            update_running(self.running_mean, self.running_var, mean, var, count, self.momentum, 1,
                           self.spec.centered, "sample")


class LayerNorm(ReportsPath, torch.nn.LayerNorm):
    """``torch.nn.LayerNorm`` on normgrad's operators. input: (..., *normalized_shape)."""

    def forward(self, input):
        self._note_path(input)
        flat = _features_last(self, input)
        return _as_input(apply_norm(flat, _flat(self.weight), _flat(self.bias), None, None, "layer", 1, self.eps)[0],
                         input)


class RMSNorm(ReportsPath, torch.nn.RMSNorm):
    """``torch.nn.RMSNorm`` on normgrad's operators; eps None is the input dtype's
    machine epsilon. input: (..., *normalized_shape)."""

    def forward(self, input):
        self._note_path(input)
        flat = _features_last(self, input)
        eps = torch.finfo(input.dtype).eps if self.eps is None else self.eps
        return _as_input(apply_norm(flat, _flat(self.weight), None, None, None, "rms", 1, eps)[0], input)


class GroupNorm(ReportsPath, torch.nn.GroupNorm):
    """``torch.nn.GroupNorm`` on normgrad's operators. input: (N, C, *)."""

    def forward(self, input, mask=None):
        """mask: None, or bool (N, *spatial), True = valid: each sample's group statistics
        over its valid positions, every position normalized with them."""
        self._note_path(input)
        if input.dim() < 2 or input.shape[1] != self.num_channels:
            raise ValueError(f"expected input of shape (N, {self.num_channels}, ...), got {tuple(input.shape)}")
        return apply_norm(input, self.weight, self.bias, None, None, "group", self.num_groups, self.eps, mask)[0]


class _InstanceNorm(ReportsPath):
    """``torch.nn.InstanceNorm*d``'s forward: instance statistics (running averages of
    them updated in training with ``track_running_stats``; momentum None: no update),
    running statistics in evaluation when tracked. Unbatched input (C, *spatial) too."""

    def forward(self, input, mask=None):
        """mask: None, or bool (N, *spatial) ((*spatial) unbatched), True = valid: each
        instance's statistics over its valid positions (running averages, when tracked,
        unbiased by each instance's valid count), every position normalized with them."""
        self._note_path(input)
        self._check_input_dim(input)
        unbatched = input.dim() == self._get_no_batch_dim()
        x = input.unsqueeze(0) if unbatched else input
        if mask is not None and unbatched:
            mask = mask.unsqueeze(0)
        if x.shape[1] != self.num_features:
            raise ValueError(f"expected input of shape (N, {self.num_features}, ...), got {tuple(input.shape)}")
        if self.training and x.numel() and x[0, 0].numel() == 1:
            raise ValueError(f"Expected more than 1 spatial element when training, got input size {list(input.shape)}")
        if self.track_running_stats and not self.training:
            y = apply_norm(x, self.weight, self.bias, self.running_mean, self.running_var, "batch", 1, self.eps,
                           mask)[0]
        else:
            tracking = self.training and self.track_running_stats and self.momentum is not None
            if tracking:
                count = _counts(INSTANCE, x, 1, mask)
                _check_count(count, True, input)
            y, mean, var, _ = apply_norm(x, self.weight, self.bias, None, None, "instance", 1, self.eps, mask)
            if tracking:
                update_running(self.running_mean, self.running_var, mean, var, count, self.momentum, 1, True, "sample")
        return y.squeeze(0) if unbatched else y


class InstanceNorm1d(_InstanceNorm, torch.nn.InstanceNorm1d):
    """``torch.nn.InstanceNorm1d`` on normgrad's operators. input: (N, C, L) or (C, L)."""


class InstanceNorm2d(_InstanceNorm, torch.nn.InstanceNorm2d):
    """``torch.nn.InstanceNorm2d`` on normgrad's operators. input: (N, C, H, W) or (C, H, W)."""


class InstanceNorm3d(_InstanceNorm, torch.nn.InstanceNorm3d):
    """``torch.nn.InstanceNorm3d`` on normgrad's operators. input: (N, C, D, H, W) or (C, D, H, W)."""


class _BatchRenorm:
    """Batch renormalization (Ioffe 2017) in training with running statistics:
    y = weight * (xhat * r + d) + bias (``core.variants``: r and d from the running
    statistics before this batch, detached); batch norm otherwise. State dict: batch
    norm's."""

    def __init__(self, num_features: int, rmax: float = 3.0, dmax: float = 5.0, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 device=None, dtype=None):
        rmax, dmax = variants.renorm_limits(rmax, dmax)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.rmax, self.dmax = rmax, dmax

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rmax={self.rmax}, dmax={self.dmax}"

    def forward(self, input):
        if not (self.training and self.track_running_stats):
            return super().forward(input)
        self._note_path(input)
        self._check_input_dim(input)
        C = self.num_features
        count = input.numel() // C
        v.enough_values(count, f"input of shape {tuple(input.shape)}")
        xhat, mean, var, _ = apply_norm(input, None, None, None, None, "batch", 1, self.eps)
        r, d = variants.renorm_correction(mean, var, self.running_mean.to(mean), self.running_var.to(var), self.eps,
                                          self.rmax, self.dmax)
        one = torch.ones(C, dtype=input.dtype, device=input.device)
        scale, shift = variants.renorm_affine(one if self.weight is None else self.weight,
                                              0 * one if self.bias is None else self.bias, r.to(one), d.to(one))
        shape = (1, C) + (1,) * (input.dim() - 2)
        y = xhat * scale.reshape(shape) + shift.reshape(shape)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
        update_running(self.running_mean, self.running_var, mean, var, count, self.momentum,
                       self.num_batches_tracked)
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
        virtual_batch_size = variants.virtual_batch_size_value(virtual_batch_size)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.virtual_batch_size = virtual_batch_size

    def extra_repr(self) -> str:
        return super().extra_repr() + f", virtual_batch_size={self.virtual_batch_size}"

    def forward(self, input):
        if not self.training:
            return super().forward(input)
        self._check_input_dim(input)
        variants.ghost_chunks(tuple(input.shape), self.virtual_batch_size)  # refuses before any chunk runs
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
    torch.nn.InstanceNorm3d: InstanceNorm3d,
}


def convert_norms(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every ``torch.nn`` BatchNorm1d/2d/3d, LayerNorm, GroupNorm, RMSNorm and
    InstanceNorm1d/2d in ``module`` by normgrad's class of the same kind, sharing its
    parameters and buffers. Returns the converted module."""
    return swap_exact(module, TORCH_TO_NORMGRAD)
