"""Synchronized batch norm for data-parallel training of ``normgrad.nn`` models.

Each process holds a shard of the global batch; ``SyncBatchNorm`` normalizes
with the statistics of the whole batch through a ``Communicator`` (the protocol
and the synchronized step live in ``normgrad.core.sync``, shared with
``normgrad.torch.SyncBatchNorm``): two small all-reduces per training step, plus
one when a module first synchronizes, to check that every rank built the same
layer. ``allreduce_grads`` sums the parameter gradients over the ranks;
``shard_bounds`` splits a batch.

``normgrad.torch.TorchCommunicator`` implements the protocol on
``torch.distributed`` (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..core import validate as v
from ..core.sync import (Communicator, CountingCommunicator, LocalCommunicator, SyncError, agree_layout,
                         synced_backward, synced_forward, valid_count)
from .module import Module
from .norm import BatchNorm1d, BatchNorm2d, Saved, _BatchNorm

__all__ = ["SyncBatchNorm", "convert_sync_batchnorm", "allreduce_grads", "shard_bounds", "Communicator",
           "LocalCommunicator", "CountingCommunicator", "SyncError"]


class _KernelOps:
    """The synchronized step's array operations on NumPy arrays: the fused kernels."""

    valid_count = staticmethod(valid_count)
    stats = staticmethod(kernels.batchnorm_stats)
    normalize = staticmethod(kernels.batchnorm_normalize)
    grad_sums = staticmethod(kernels.batchnorm_grad_sums)

    @staticmethod
    def grad_input(dy, x, mean, invstd, gamma, sum_dy, sum_dy_xmu, count, mask):
        return kernels.batchnorm_grad_input(dy, x, mean, invstd, gamma, sum_dy, sum_dy_xmu, count, mask=mask)

    @staticmethod
    def copy(x):
        return np.array(x, copy=True)

    @staticmethod
    def zeros_like(x):
        return np.zeros_like(x)


class SyncBatchNorm(_BatchNorm):
    """Batch norm over the global batch of all ranks of ``comm`` in training.

    Same arguments and state as ``BatchNorm1d``/``BatchNorm2d`` (any input with
    channels on axis 1, rank >= 2) plus ``comm``. In evaluation mode, or with one
    rank, it is plain batch norm. ``backward`` returns this shard's dx (the
    gradient of the sum of every rank's loss) and fills this shard's
    weight/bias gradients; sum those over ranks with ``allreduce_grads``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, comm: Communicator | None = None,
                 dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)
        if comm is not None and not isinstance(comm, Communicator):
            raise TypeError(f"comm must implement Communicator (rank, world_size, allreduce_sum), got {comm!r}")
        self.comm = comm
        self._layout_agreed = False

    def _check_input_dim(self, x):
        if x.ndim < 2:
            raise ValueError(f"expected at least 2D input (got {x.ndim}D input)")

    def _synced(self) -> bool:
        return self.training and self.comm is not None and self.comm.world_size > 1

    def forward(self, x, mask=None):
        """x: (N, C, *spatial), N may be 0 on some ranks; mask: None, or bool (N, *spatial),
        True = valid (the statistics of every rank's valid positions; a rank may have
        none). Returns y of x's shape and dtype."""
        if not self._synced():
            return super().forward(x, mask)
        if not self._layout_agreed:
            agree_layout(self.comm, self.num_features)
            self._layout_agreed = True
        x = np.asarray(x)  # checked inside the exchange, so a bad input on one rank stops every rank
        self._run_hooks(x)
        gamma, beta = (np.asarray(a, dtype=np.float64) for a in self._gamma_beta())
        y, stats = synced_forward(self.comm, _KernelOps, x, self.num_features, gamma, beta, self.eps, mask)
        if self.track_running_stats:
            self._track(stats.count, stats)
        self._saved = Saved(np.ascontiguousarray(x), stats, True, mask)
        return y

    def backward(self, dout):
        if not self._synced():
            return super().backward(dout)
        saved = self._saved_or_raise()
        x, stats = saved.x, saved.stats
        dout = np.asarray(dout)
        err = None
        if dout.shape != x.shape:  # still take part, so the other ranks are told, not left waiting
            err = ValueError(f"dout must have the forward output's shape {x.shape}, got {dout.shape}")
        gamma = np.asarray(self._gamma_beta()[0], dtype=np.float64)
        dx, dgamma, dbeta = synced_backward(self.comm, _KernelOps, dout, x, stats, gamma, err)
        self._set_grads(dgamma, dbeta)
        return dx


def convert_sync_batchnorm(module: Module, comm: Communicator) -> Module:
    """Replace every ``BatchNorm1d``/``BatchNorm2d`` in ``module`` (the module itself,
    or the layers of a ``Sequential``, nested ones included) by a ``SyncBatchNorm``
    on ``comm`` with the same parameters and running statistics. Returns the
    converted module (a new one if ``module`` itself is a batch norm)."""
    if isinstance(module, (BatchNorm1d, BatchNorm2d)) and not isinstance(module, SyncBatchNorm):
        sync = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats, comm=comm, dtype=module.dtype)
        sync.load_state_dict(module.state_dict())
        sync.training = module.training
        return sync
    layers = getattr(module, "layers", None)
    if isinstance(layers, list):
        module.layers = [convert_sync_batchnorm(m, comm) for m in layers]
    return module


def allreduce_grads(module: Module, comm: Communicator, *extra: float) -> list[float]:
    """Sum every parameter gradient of ``module`` over the ranks, in place, in one
    all-reduce: afterwards each rank holds the gradient of the summed loss.

    ``extra`` scalars (a loss, a count of correct answers) ride along in the same
    all-reduce; their sums over the ranks are returned.
    """
    grads = [g for _, g in module.named_grads()]
    parts = [g.astype(np.float64).ravel() for g in grads] + [np.asarray(extra, dtype=np.float64)]
    flat = comm.allreduce_sum(np.concatenate(parts))
    offset = 0
    for g in grads:
        g[...] = flat[offset:offset + g.size].reshape(g.shape)
        offset += g.size
    return [float(t) for t in flat[offset:]]


def shard_bounds(n: int, world_size: int, sizes=None) -> list[tuple[int, int]]:
    """[lo, hi) rows of each rank in a batch of ``n``: ``sizes`` if given (uneven
    shards, zeros allowed; they must add up to n), else as even as possible."""
    if sizes is None:
        sizes = [n // world_size + (r < n % world_size) for r in range(world_size)]
    sizes = [v.integer_value("shard size", s) for s in sizes]
    if len(sizes) != world_size or sum(sizes) != n or min(sizes) < 0:
        raise ValueError(f"shard sizes {sizes} must be {world_size} non-negative sizes adding up to {n}")
    ends = np.cumsum([0, *sizes])
    return [(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:])]
