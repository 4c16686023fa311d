"""Synchronized batch norm: the communicator protocol and the one synchronized step.

Each process holds a shard of the global batch; batch norm must normalize with
the statistics of the whole batch. The step below is written once, for NumPy
arrays and torch tensors alike: it reaches the data only through a small
``ops`` object (``SyncOps``), and the other ranks only through a
``Communicator``.

- forward: one all-reduce of a (world_size, 3 + 2C) float64 buffer in which each
  rank fills its own row (status, channels, count, mean, centred sum of
  squares); every rank merges the rows with Chan's formula
  (``stats.combine_moments``), so uneven shards are weighted exactly and a large
  common mean does not cancel;
- backward: one all-reduce of (sum dy, sum dy * (x - mean), error flag).

Every rank takes part in both, even with an empty shard or a bad input: a rank
whose input is wrong says so in the exchanged header, and then *every* rank
raises (the wrong one its own error, the others a ``SyncError`` naming it), so
no rank is left waiting for a peer that gave up.

Before its first exchange a module calls ``agree_layout`` (one small
all-reduce whose size depends only on the world size): ranks whose modules
disagree on the channel count would otherwise send buffers of different sizes,
which makes a backend such as gloo abort the process outright.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Protocol, runtime_checkable

import numpy as np

from . import validate as v
from .stats import combine_moments


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


class CountingCommunicator:
    """Wraps a communicator and counts its all-reduces in ``calls`` (for benchmarks and tests)."""

    def __init__(self, inner: Communicator):
        self.inner, self.calls = inner, 0
        self.rank, self.world_size = inner.rank, inner.world_size

    def allreduce_sum(self, buf: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.inner.allreduce_sum(buf)


class SyncOps(Protocol):
    """The array operations the synchronized step needs (NumPy kernels, or torch).

    Per-channel vectors (mean, invstd, gamma, beta, sums) are (C,) float64 NumPy
    arrays; x, y, dy, dx are the caller's arrays, (N, C, *spatial).
    """

    def valid_count(self, x, mask) -> int:
        """Values per channel in this shard: N * prod(spatial), or the mask's True positions
        (mask: None, or bool (N, *spatial)); TypeError/ValueError for a bad mask."""

    def stats(self, x, mask) -> tuple[np.ndarray, np.ndarray]:
        """Mean and biased variance of a shard with valid values, over its valid positions;
        TypeError/ValueError for bad input."""

    def normalize(self, x, mean, invstd, gamma, beta): ...

    def copy(self, x): ...

    def zeros_like(self, x): ...

    def grad_sums(self, dy, x, mean) -> tuple[np.ndarray, np.ndarray]:
        """sum(dy) and sum(dy * (x - mean)) per channel; TypeError/ValueError for bad input."""

    def grad_input(self, dy, x, mean, invstd, gamma, sum_dy, sum_dy_xmu, count: int, mask): ...


# Header of each rank's row in the forward exchange.
_OK, _BAD_CHANNELS, _BAD_INPUT = 1.0, 2.0, 3.0
_HEADER = 3  # status, channels of the input, values per channel


def valid_count(x, mask) -> int:
    """Values per channel of a NumPy (or CPU) shard x (N, C, *spatial): N * prod(spatial),
    or the True positions of ``mask`` (bool (N, *spatial), checked)."""
    shape = tuple(x.shape)
    if mask is None:
        return prod(shape) // shape[1]
    return int(v.mask_array(mask, shape, 1).sum())


def agree_layout(comm: Communicator, num_features: int) -> None:
    """One all-reduce of (world_size,) values: raise ``SyncError`` on every rank
    unless all ranks' modules have ``num_features`` channels."""
    buf = np.zeros(comm.world_size)
    buf[comm.rank] = num_features
    counts = [int(c) for c in comm.allreduce_sum(buf)]
    if len(set(counts)) > 1:
        raise SyncError(f"synchronized batch norm: the ranks' modules disagree on num_features: {counts} "
                        f"(rank r's is entry r); every rank must build the same model")


def _local_moments(shape: tuple, num_features: int, local_count, local_stats):
    """This rank's (status, error, count, mean, m2) for an input of ``shape``."""
    zeros = np.zeros(num_features)
    if len(shape) < 2 or shape[1] != num_features:
        err = ValueError(f"expected input of shape (N, {num_features}, ...), got {tuple(shape)}")
        return _BAD_CHANNELS, err, 0, zeros, zeros
    try:
        count = local_count()
        if count == 0:  # an empty shard (or one all padding) still takes part, contributing nothing
            return _OK, None, 0, zeros, zeros
        mean, var = local_stats()
    except (TypeError, ValueError) as err:  # wrong dtype or mask, NaN/Inf, overflow
        return _BAD_INPUT, err, 0, zeros, zeros
    return _OK, None, count, mean, var * count


def _raise_for_status(comm, status: np.ndarray, detail: np.ndarray, own_error, num_features: int):
    """After the forward exchange: raise on every rank if any rank reported a problem."""
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
    raise SyncError(f"synchronized batch norm forward failed on rank {r} of {comm.world_size}: {reason}")


def sync_batch_stats(comm: Communicator, shape: tuple, num_features: int, local_stats, local_count=None):
    """Global batch statistics of the shards held by all ranks; one all-reduce.

    - shape: this rank's input shape (N, C, *spatial); N may be 0
    - local_stats: callable returning this shard's per-channel (mean, biased var),
      (C,) float64; called only for a shard with valid values of the right channel count.
      A TypeError/ValueError it raises is reported to every rank.
    - local_count: callable returning this shard's values per channel (default:
      N * prod(spatial); with a padding mask its valid positions, 0 allowed)
    Returns (count, mean (C,), biased var (C,)) of the global batch, the same on
    every rank.
    """
    count_of = local_count if local_count is not None else (lambda: prod(shape) // num_features)
    status, err, count, mean, m2 = _local_moments(tuple(shape), num_features, count_of, local_stats)
    W, C = comm.world_size, num_features
    buf = np.zeros((W, _HEADER + 2 * C))
    buf[comm.rank, :_HEADER] = status, (shape[1] if len(shape) >= 2 else 0), count
    buf[comm.rank, _HEADER:_HEADER + C] = mean
    buf[comm.rank, _HEADER + C:] = m2
    buf = comm.allreduce_sum(buf)
    _raise_for_status(comm, buf[:, 0], buf[:, 1], err, C)
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


@dataclass(frozen=True)
class SyncedStats:
    """What the synchronized forward used: the global batch's statistics.

    - count: values per channel over all ranks (valid positions, with a mask)
    - mean, var, invstd: (C,) float64; var is biased, invstd = 1 / sqrt(var + eps)
    - mask: this rank's padding mask (None: every position valid)
    """

    count: int
    mean: np.ndarray
    var: np.ndarray
    invstd: np.ndarray
    mask: object = None


def synced_forward(comm: Communicator, ops: SyncOps, x, num_features: int, gamma, beta, eps: float, mask=None):
    """Batch norm of this rank's shard ``x`` with the global batch's statistics.

    gamma, beta: (C,) float64; mask: None, or bool (N, *spatial), True = valid: the
    statistics are over every rank's valid positions (the valid counts travel with the
    sums, so ranks may hold any number, none included). Every check on x and the mask
    happens inside the exchange. Returns (y, SyncedStats); an empty shard gives an empty y.
    """
    count, mean, var = sync_batch_stats(comm, tuple(x.shape), num_features, lambda: ops.stats(x, mask),
                                        lambda: ops.valid_count(x, mask))
    invstd = 1.0 / np.sqrt(var + eps)
    y = ops.normalize(x, mean, invstd, gamma, beta) if prod(x.shape) else ops.copy(x)
    return y, SyncedStats(count, mean, var, invstd, mask)


def synced_backward(comm: Communicator, ops: SyncOps, dy, x, stats: SyncedStats, gamma,
                    error: Exception | None = None):
    """Gradients of ``synced_forward``: (dx of this shard, dgamma, dbeta of this shard).

    ``error``: a problem the caller found with dy; it is reported to every rank.
    """
    C = stats.mean.shape[0]
    empty = prod(x.shape) == 0
    sums = None if empty else (lambda: ops.grad_sums(dy, x, stats.mean))
    (sum_dy, sum_dy_xmu), (all_dy, all_dy_xmu) = sync_grad_sums(comm, C, sums, error)
    if empty:
        dx = ops.zeros_like(x)
    else:
        dx = ops.grad_input(dy, x, stats.mean, stats.invstd, gamma, all_dy, all_dy_xmu, stats.count, stats.mask)
    return dx, sum_dy_xmu * stats.invstd, sum_dy
