"""Drop-in ``torch.nn`` batch-norm modules on normgrad's kernels.

Each class subclasses its PyTorch counterpart, so arguments, parameters,
buffers, state dicts, ``train()/eval()``, ``isinstance`` checks and printing are
PyTorch's own; only ``forward`` is replaced.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from torch.nn.modules.batchnorm import _BatchNorm

from ..core import running
from ..core.sync import agree_layout
from .distributed import TorchCommunicator, as_timedelta
from . import ops
from .functional import batch_norm, check_batch_norm, checked_batch_norm


class ReportsPath:
    """``extra_repr`` ends with the implementation the module's last eager call took
    (``ops.path_of``), once it has run."""

    def _note_path(self, input: torch.Tensor) -> None:
        if not torch.compiler.is_compiling():
            self._path = ops.path_of(input)

    def extra_repr(self) -> str:
        path = getattr(self, "_path", None)
        return super().extra_repr() + (f", path={path}" if path else "")


class _KernelForward(ReportsPath):
    """``torch.nn.modules.batchnorm._BatchNorm.forward``'s bookkeeping (momentum
    None = cumulative average, num_batches_tracked, when batch statistics are
    used), with normgrad's ``batch_norm`` doing the work. ``extra_repr`` names the
    implementation the last eager call took (``ops.path_of``)."""

    def communicator(self):
        """The communicator of this forward's synchronized statistics; None: plain batch norm."""
        return None

    def forward(self, input: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """input: (N, C, *spatial); mask: None, or bool (N, *spatial), True = valid position:
        in training the statistics (and the running averages, unbiased by the valid count)
        are those of the valid positions, every position normalized with them; in
        evaluation the running statistics are used and the mask only checked."""
        if not torch.compiler.is_compiling():
            self._path, self._input_dim = ops.path_of(input), input.dim()
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        if batch_stats and self.synchronizes():
            return _synced_forward(self, input, torch.compiler.is_compiling(), mask)
        self._check_input_dim(input)
        return self._batch_norm(input, batch_stats, None, mask)

    def synchronizes(self) -> bool:
        """Whether a training forward exchanges statistics with other ranks."""
        return False

    def _batch_norm(self, input, batch_stats: bool, comm, mask=None):
        keep_running = not self.training or self.track_running_stats
        if comm is None:  # every check before num_batches_tracked changes (synced: inside the exchange)
            check_batch_norm(input, self.weight, self.bias, self.running_mean if keep_running else None,
                             self.running_var if keep_running else None, batch_stats, mask, self.eps)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = running.TORCH.weight(self.momentum, self.num_batches_tracked)
        running_mean = self.running_mean if keep_running else None
        running_var = self.running_var if keep_running else None
        if comm is None:
            return checked_batch_norm(input, running_mean, running_var, self.weight, self.bias, batch_stats, factor,
                                      self.eps, mask if batch_stats else None)
        return batch_norm(input, running_mean, running_var, self.weight, self.bias, batch_stats, factor, self.eps,
                          comm=comm, mask=mask)

_warned_eager_sync = False


@torch.compiler.disable
def _synced_forward(module, input, compiling: bool, mask=None):
    """SyncBatchNorm's exchange, always eager: under ``torch.compile`` the graph breaks
    here (a one-time warning says so), since the all-reduces run inside the step."""
    global _warned_eager_sync
    if compiling and not _warned_eager_sync:
        _warned_eager_sync = True
        warnings.warn("normgrad.torch.SyncBatchNorm runs eagerly under torch.compile: its statistics are "
                      "all-reduced inside the layer, so the compiled graph breaks at each synchronized "
                      "layer (the rest of the model stays compiled)", stacklevel=2)
    comm = module.communicator()
    module._agree_layout(comm)
    return module._batch_norm(input, True, comm, mask)


class BatchNorm1d(_KernelForward, torch.nn.BatchNorm1d):
    """``torch.nn.BatchNorm1d`` on normgrad's kernels. input: (N, C) or (N, C, L)."""


class BatchNorm2d(_KernelForward, torch.nn.BatchNorm2d):
    """``torch.nn.BatchNorm2d`` on normgrad's kernels. input: (N, C, H, W)."""


class BatchNorm3d(_KernelForward, torch.nn.BatchNorm3d):
    """``torch.nn.BatchNorm3d`` on normgrad's kernels. input: (N, C, D, H, W)."""


class BatchNorm(_KernelForward, _BatchNorm):
    """Batch norm of any input rank, (N, C) to (N, C, D, H, W): what a ``SyncBatchNorm``
    whose input rank is unknown reverts to (as mmcv's ``revert_sync_batchnorm`` does).
    Arguments, parameters, buffers and state-dict keys are batch norm's."""

    def _check_input_dim(self, input):
        if not 2 <= input.dim() <= 5:
            raise ValueError(f"expected 2D to 5D input (got {input.dim()}D input)")


class SyncBatchNorm(_KernelForward, _BatchNorm):
    """``torch.nn.SyncBatchNorm``'s interface, also on CPU tensors (gloo), and on GPU (NCCL).

    Not a subclass of ``torch.nn.SyncBatchNorm``: DistributedDataParallel refuses
    any such layer in a CPU model ("SyncBatchNorm layers only work with GPU
    modules"); same state dict keys, arguments and ``convert_sync_batchnorm``.

    In training, with ``torch.distributed`` initialized and more than one rank in
    ``process_group`` (None = the default group), the batch statistics are those of
    the global batch: one all-reduce of per-channel (count, mean, centred sum of
    squares) in forward, merged with Chan's formula, and one of (sum dy,
    sum dy * xhat) in backward. Ranks may hold uneven shards, an empty one
    included. Otherwise it is plain batch norm, as PyTorch's is.

    Extra keyword ``timeout`` (seconds or timedelta): how long each all-reduce waits
    for the peers before raising ``normgrad.nn.distributed.SyncError``; None uses
    the process group's timeout. Weight and bias gradients cover this rank's
    shard, as in PyTorch (DistributedDataParallel sums them).
    input: (N, C, *spatial).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group=None, device=None, dtype=None, *, bias: bool = True,
                 timeout=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)
        self.process_group = process_group
        self.timeout = as_timedelta(timeout)
        self._layout_agreed_on = None  # (process group, world size) the layout was checked on

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def synchronizes(self) -> bool:
        """Training with ``torch.distributed`` initialized and more than one rank in the group."""
        return (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self.process_group) > 1)

    def communicator(self):
        """A ``TorchCommunicator`` on ``process_group`` while training with more than
        one rank, else None (a subclass may wrap it, e.g. to count all-reduces)."""
        if not self.synchronizes():
            return None
        return TorchCommunicator(self.process_group, self.timeout)

    def _agree_layout(self, comm) -> None:
        """Before the first exchange on a group: every rank's module must have the same
        ``num_features`` (one small all-reduce), so ranks that built different models
        raise ``SyncError`` instead of exchanging buffers of different sizes."""
        key = (id(self.process_group), comm.world_size)
        if self._layout_agreed_on != key:
            agree_layout(comm, self.num_features)
            self._layout_agreed_on = key

    @classmethod
    def convert_sync_batchnorm(cls, module: torch.nn.Module, process_group=None, *, timeout=None) -> torch.nn.Module:
        """Replace every batch-norm layer in ``module`` (``torch.nn.BatchNorm*d`` or
        normgrad's) by this class, sharing its parameters and buffers. Returns the
        converted module, like ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``."""
        return _swap(module, (_BatchNorm,), lambda bn: bn if isinstance(bn, SyncBatchNorm) else cls(
            bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, process_group,
            timeout=timeout))


def convert_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every ``torch.nn.BatchNorm1d/2d/3d`` in ``module`` by normgrad's
    kernel-backed class of the same kind, sharing parameters and buffers."""
    kinds = {torch.nn.BatchNorm1d: BatchNorm1d, torch.nn.BatchNorm2d: BatchNorm2d, torch.nn.BatchNorm3d: BatchNorm3d}
    return swap_exact(module, kinds)


def swap_exact(module: torch.nn.Module, kinds: dict) -> torch.nn.Module:
    """Recursively replace every module whose type is a key of ``kinds`` by an instance
    of the value class that shares its parameters, buffers, settings and mode (the
    value classes subclass the keys and add no state). Returns the new root."""
    out = module
    if type(module) in kinds:
        out = kinds[type(module)].__new__(kinds[type(module)])
        out.__dict__ = {k: (dict(v) if isinstance(v, dict) else v) for k, v in module.__dict__.items()}
        out.__dict__.pop("_path", None)
    for name, child in module.named_children():
        out.add_module(name, swap_exact(child, kinds))
    return out


def _swap(module, kinds, make):
    """Recursively replace modules of ``kinds`` by ``make(old)``, moving the old one's
    parameters, buffers and mode over."""
    out = module
    if isinstance(module, kinds):
        out = make(module)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        if hasattr(module, "qconfig"):
            out.qconfig = module.qconfig
    for name, child in module.named_children():
        out.add_module(name, _swap(child, kinds, make))
    return out


def revert_sync_batchnorm(module: torch.nn.Module, kind: type | None = None) -> torch.nn.Module:
    """Replace every ``SyncBatchNorm`` (normgrad's or ``torch.nn.SyncBatchNorm``) in
    ``module`` by normgrad's ``BatchNorm1d/2d/3d`` or ``BatchNorm``, sharing parameters and buffers and
    keeping the train/eval mode: a model trained with synchronized statistics then
    runs (and exports) in one process.

    The class follows the rank of the last input the layer saw (normgrad's records
    it); for layers that never ran, or torch's, ``kind``, or by default the rank-agnostic
    ``BatchNorm`` (any input from 2-D to 5-D)."""
    by_rank = {2: BatchNorm1d, 3: BatchNorm1d, 4: BatchNorm2d, 5: BatchNorm3d}

    def make(sync):
        cls = by_rank.get(getattr(sync, "_input_dim", None), kind or BatchNorm)
        return cls(sync.num_features, sync.eps, sync.momentum, sync.affine, sync.track_running_stats)

    return _swap(module, (SyncBatchNorm, torch.nn.SyncBatchNorm), make)
