"""Synchronized batch norm for data-parallel training of ``normgrad.nn`` models.

Each process holds a shard of the global batch. Batch norm must normalize with
the statistics of the whole batch, so the processes exchange two small messages
per training step through a ``Communicator``:

- forward: every rank's per-channel (count, mean, centred sum of squares), one
  all-reduce of a (world_size, 3 + 2C) buffer in which each rank fills its own
  row; every rank then merges the rows with ``combine_moments`` (Chan's formula),
  so uneven shards are weighted exactly and a large mean does not cancel;
- backward: per-channel (sum dy, sum dy * (x - mean)), one all-reduce of 2C + 1
  values.

Every rank takes part in both, even with an empty shard or a bad input: a rank
whose input is wrong says so in the exchanged header, and then *every* rank
raises (the wrong one its own error, the others a ``SyncError`` naming it), so no
rank is left waiting for a peer that gave up.

``normgrad.torch.TorchCommunicator`` implements the interface on
``torch.distributed`` (gloo on CPU, NCCL on GPU); ``normgrad.torch.SyncBatchNorm``
uses the same exchange for PyTorch models.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .. import kernels
from ..functional import _validate as v
from ..functional.stats import combine_moments
from .module import Module
from .norm import BatchNorm1d, BatchNorm2d, _BatchNorm


class SyncError(RuntimeError):
    """A synchronized step failed on some rank, or the exchange itself failed."""


@runtime_checkable
class Communicator(Protocol):
    """What synchronized batch norm needs from a process group.

    ``allreduce_sum(buf)`` takes a float64 array of the same shape on every rank
    and returns the elementwise sum over the ranks (it may work in place). It must
    raise, not hang, when a peer is gone or a time limit passes.
    """

    rank: int
    world_size: int

    def allreduce_sum(self, buf: np.ndarray) -> np.ndarray: ...


class LocalCommunicator:
    """One process: the sum over ranks is the buffer itself."""

    rank = 0
    world_size = 1

    def allreduce_sum(self, buf: np.ndarray) -> np.ndarray:
        return buf


# Header of each rank's row in the forward exchange.
_OK, _BAD_CHANNELS, _BAD_INPUT = 1.0, 2.0, 3.0
_HEADER = 3  # status, channels of the input, values per channel


def _local_moments(shape: tuple, num_features: int, local_stats):
    """This rank's (status, error, count, mean, m2) for an input of ``shape``."""
    zeros = np.zeros(num_features)
    if len(shape) < 2 or shape[1] != num_features:
        err = ValueError(f"expected input of shape (N, {num_features}, ...), got {tuple(shape)}")
        return _BAD_CHANNELS, err, 0, zeros, zeros
    count = int(np.prod(shape)) // num_features
    if count == 0:  # an empty shard still takes part, contributing nothing
        return _OK, None, 0, zeros, zeros
    try:
        mean, var = local_stats()
    except (TypeError, ValueError) as err:  # wrong dtype, NaN/Inf, overflow
        return _BAD_INPUT, err, 0, zeros, zeros
    return _OK, None, count, mean, var * count


def _raise_for_status(comm, status: np.ndarray, detail: np.ndarray, own_error, num_features: int, what: str):
    """After an exchange: raise on every rank if any rank reported a problem."""
    bad = np.flatnonzero(status != _OK)
    if bad.size == 0:
        return
    if own_error is not None:
        raise own_error
    r = int(bad[0])
    if status[r] == _BAD_CHANNELS:
        reason = f"its input has {int(detail[r])} channels, expected {num_features}"
    elif status[r] == _BAD_INPUT:
        reason = "its input is invalid (dtype, NaN, Inf or overflow); see the error on that rank"
    else:
        reason = "it did not fill its part of the exchange (are the ranks numbered 0..world_size-1?)"
    raise SyncError(f"synchronized batch norm {what} failed on rank {r} of {comm.world_size}: {reason}")


def sync_batch_stats(comm: Communicator, shape: tuple, num_features: int, local_stats):
    """Global batch statistics of the shards held by all ranks; one all-reduce.

    - shape: this rank's input shape (N, C, *spatial); N may be 0
    - local_stats: callable returning this shard's per-channel (mean, biased var),
      (C,) float64; called only for a non-empty shard of the right channel count.
      A TypeError/ValueError it raises is reported to every rank.
    Returns (count, mean (C,), biased var (C,)) of the global batch, the same on
    every rank.
    """
    status, err, count, mean, m2 = _local_moments(tuple(shape), num_features, local_stats)
    W, C = comm.world_size, num_features
    buf = np.zeros((W, _HEADER + 2 * C))
    buf[comm.rank, :_HEADER] = status, (shape[1] if len(shape) >= 2 else 0), count
    buf[comm.rank, _HEADER:_HEADER + C] = mean
    buf[comm.rank, _HEADER + C:] = m2
    buf = comm.allreduce_sum(buf)
    _raise_for_status(comm, buf[:, 0], buf[:, 1], err, C, "forward")
    total, g_mean, g_m2 = combine_moments(buf[:, 2], buf[:, _HEADER:_HEADER + C], buf[:, _HEADER + C:])
    v.enough_values(total, f"{W} ranks with {[int(n) for n in buf[:, 2]]} values per channel")
    return total, g_mean, g_m2 / total


def sync_grad_sums(comm: Communicator, num_features: int, local_sums, error: Exception | None = None):
    """Global per-channel sum(dy) and sum(dy * (x - mean)); one all-reduce.

    - local_sums: callable returning this shard's pair of (C,) float64 sums, or
      None for an empty shard. A TypeError/ValueError it raises is reported to
      every rank, and so is ``error`` (a problem the caller already found).
    Returns (local sums, global sums). The local pair gives this rank's dgamma /
    dbeta (PyTorch's convention: each rank's parameter gradients cover its own
    shard, and data parallelism sums them over ranks).
    """
    C = num_features
    err = error
    local = (np.zeros(C), np.zeros(C))
    if err is None and local_sums is not None:
        try:
            local = local_sums()
        except (TypeError, ValueError) as e:
            err = e
    buf = np.zeros(2 * C + 1)
    buf[:C], buf[C:2 * C] = local
    buf[-1] = err is not None
    buf = comm.allreduce_sum(buf)
    if buf[-1]:
        if err is not None:
            raise err
        raise SyncError(f"synchronized batch norm backward failed on {int(buf[-1])} other rank(s): "
                        "invalid upstream gradient (dtype, NaN, Inf or shape); see the error there")
    return local, (buf[:C], buf[C:2 * C])


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

    def _check_input_dim(self, x):
        if x.ndim < 2:
            raise ValueError(f"expected at least 2D input (got {x.ndim}D input)")

    def _synced(self) -> bool:
        return self.training and self.comm is not None and self.comm.world_size > 1

    def forward(self, x):
        """x: (N, C, *spatial), N may be 0 on some ranks. Returns y of x's shape and dtype."""
        if not self._synced():
            return super().forward(x)
        x = np.asarray(x)  # checked inside the exchange, so a bad input on one rank stops every rank
        count, mean, var = sync_batch_stats(self.comm, x.shape, self.num_features, lambda: kernels.batchnorm_stats(x))
        x = np.ascontiguousarray(v.float_array("x", x))
        invstd = 1.0 / np.sqrt(var + self.eps)
        if self.track_running_stats:
            self._update_running(count, mean, var)
        gamma, beta = self._gamma_beta()
        y = kernels.batchnorm_normalize(x, mean, invstd, gamma, beta) if x.size else x.copy()
        self._saved = (x, mean, invstd, count)
        return y

    def backward(self, dout):
        if not self._synced():
            return super().backward(dout)
        x, mean, invstd, count = self._saved_or_raise()
        dout = np.asarray(dout)
        err = None
        if dout.shape != x.shape:  # still take part, so the other ranks are told, not left waiting
            err = ValueError(f"dout must have the forward output's shape {x.shape}, got {dout.shape}")
        sums = (lambda: kernels.batchnorm_grad_sums(dout, x, mean)) if x.size else None
        (sdy, sdyx), (g_sdy, g_sdyx) = sync_grad_sums(self.comm, self.num_features, sums, err)
        gamma, _ = self._gamma_beta()
        dx = (kernels.batchnorm_grad_input(dout, x, mean, invstd, gamma, g_sdy, g_sdyx, count)
              if x.size else np.zeros_like(x))
        self._set_grads(sdyx * invstd, sdy)
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
