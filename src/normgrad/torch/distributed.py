"""``torch.distributed`` as a ``normgrad.nn.distributed.Communicator``."""

from __future__ import annotations

import datetime

import numpy as np
import torch
import torch.distributed as dist

from ..core.sync import SyncError


def as_timedelta(timeout) -> datetime.timedelta | None:
    if timeout is None or isinstance(timeout, datetime.timedelta):
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or a timedelta, got {timeout!r}")
    return datetime.timedelta(seconds=float(timeout))


class TorchCommunicator:
    """Sum-all-reduce of small float64 buffers over a ``torch.distributed`` group.

    - group: a process group, or None for the default one (``init_process_group``
      must have been called)
    - timeout: seconds (or a timedelta) to wait for the peers in each all-reduce;
      None uses the group's own timeout. When it passes, or a peer dies, the call
      raises ``SyncError`` instead of waiting forever.

    With NCCL the buffer goes through the current CUDA device; with gloo it stays
    on the CPU. ``calls`` counts the all-reduces made.
    """

    def __init__(self, group=None, timeout=None):
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("torch.distributed is not initialized: call torch.distributed.init_process_group "
                               "first (torchrun sets the environment it needs)")
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.timeout = as_timedelta(timeout)
        nccl = dist.get_backend(group) == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        self.calls = 0

    def allreduce_sum(self, buf: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(buf, dtype=np.float64)).to(self.device)
        try:
            work = dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group, async_op=True)
            if self.timeout is None:
                work.wait()
            else:
                work.wait(self.timeout)
        except RuntimeError as err:  # a peer closed its connection, or the time limit passed
            raise SyncError(f"all-reduce failed on rank {self.rank} of {self.world_size}: a peer died, stopped "
                            f"taking part, or did not answer in time ({str(err).splitlines()[0]})") from err
        self.calls += 1
        return t.cpu().numpy()

    def __repr__(self) -> str:
        return f"TorchCommunicator(rank={self.rank}, world_size={self.world_size}, device={self.device})"
