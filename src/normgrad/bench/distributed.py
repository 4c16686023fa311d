"""Synchronized batch norm in the benchmark: what the two all-reduces cost.

``world_size`` local processes (gloo over 127.0.0.1, one thread each) each hold
an equal shard of a global batch and time, interleaved, one forward + backward
of ``normgrad.torch.SyncBatchNorm`` and of plain ``normgrad.torch.BatchNorm`` on
the same shard, plus the two bare all-reduces of the same sizes; the all-reduce
calls of one synchronized step are counted. For scale, the parent times one
process doing the whole global batch (normgrad and torch, at world_size threads).
"""

from __future__ import annotations

from .timing import time_interleaved

SHAPES = [(256, 1024), (4096, 256), (64, 64, 32, 32)]
QUICK_SHAPES = [(256, 1024)]


def _fwd_bwd(module, x, dy):
    x.grad = None
    module(x).backward(dy)


def _rank_timing(rank, world, shapes, repeats):
    import numba
    import torch
    import torch.distributed as dist

    import normgrad.torch as nt
    from normgrad.core.sync import CountingCommunicator
    from normgrad.nn.distributed import shard_bounds

    class CountingSyncBatchNorm(nt.SyncBatchNorm):
        def communicator(self):
            comm = super().communicator()
            self.counted = None if comm is None else CountingCommunicator(comm)
            return self.counted

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    rows = []
    for shape in shapes:
        N, C = shape[:2]
        lo, hi = shard_bounds(N, world)[rank]
        g = torch.Generator().manual_seed(rank)
        x = torch.randn((hi - lo, *shape[1:]), generator=g).requires_grad_()
        dy = torch.randn(x.shape, generator=g)
        sync, plain = CountingSyncBatchNorm(C), nt.BatchNorm2d(C) if len(shape) == 4 else nt.BatchNorm1d(C)
        stats_buf, grad_buf = torch.zeros(world, 3 + 2 * C, dtype=torch.float64), torch.zeros(2 * C + 1, dtype=torch.float64)

        _fwd_bwd(sync, x, dy)  # the first step also checks that the ranks' layers agree
        _fwd_bwd(sync, x, dy)
        calls = sync.counted.calls  # of one step after the first
        ms = time_interleaved({
            "sync": lambda: _fwd_bwd(sync, x, dy),
            "plain": lambda: _fwd_bwd(plain, x, dy),
            "allreduce": lambda: (dist.all_reduce(stats_buf), dist.all_reduce(grad_buf)),
        }, repeats)
        rows.append(dict(shape=list(shape), ranks=world, shard=list(x.shape), allreduce_calls=calls, **{
            f"{k}_ms": v for k, v in ms.items()}))
    return rows


def _one_process(shape, threads: int, repeats: int) -> dict[str, float]:
    import torch

    import normgrad.torch as nt

    torch.set_num_threads(threads)
    x = torch.randn(shape).requires_grad_()
    dy = torch.randn(shape)
    kind = 2 if len(shape) == 4 else 1
    ours = getattr(nt, f"BatchNorm{kind}d")(shape[1])
    theirs = getattr(torch.nn, f"BatchNorm{kind}d")(shape[1])
    ms = time_interleaved({"normgrad": lambda: _fwd_bwd(ours, x, dy), "torch": lambda: _fwd_bwd(theirs, x, dy)},
                           repeats)
    return {"whole_batch_normgrad_ms": ms["normgrad"], "whole_batch_torch_ms": ms["torch"]}


def sync_rows(world_size: int = 2, quick: bool = False) -> list[dict]:
    """One dict per global batch shape: the per-rank medians (rank 0's) and the
    one-process figures; ``allreduce_calls`` is per forward + backward."""
    import numba

    from ..torch.launch import run_local

    shapes, repeats = (QUICK_SHAPES, 10) if quick else (SHAPES, 40)
    rows = run_local(_rank_timing, world_size, shapes, repeats, deadline=600)[0]
    threads = numba.get_num_threads()
    try:
        for row in rows:
            row.update(_one_process(tuple(row["shape"]), world_size, repeats))
    finally:
        numba.set_num_threads(threads)
    return rows
