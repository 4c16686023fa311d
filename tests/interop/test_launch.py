"""normgrad.torch.launch.run_local: results come back; a failing or hanging rank
ends the call with a clear error within its deadline."""

from __future__ import annotations

import time

import pytest

from normgrad.torch.launch import RankFailed, run_local


def _ranks(rank, world):
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    return rank, world, t.item()


def _raises_on_rank_1(rank, world):
    if rank == 1:
        raise KeyError("planted")
    return rank


def _hangs_on_rank_0(rank, world):
    if rank == 0:
        time.sleep(600)
    return rank


def test_results_come_back_in_rank_order():
    assert run_local(_ranks, 3) == [(0, 3, 6.0), (1, 3, 6.0), (2, 3, 6.0)]


def test_a_failing_rank_is_reported_with_its_traceback():
    with pytest.raises(RankFailed, match=r"rank 1 failed: KeyError: 'planted'(.|\n)*_raises_on_rank_1"):
        run_local(_raises_on_rank_1, 2)


def test_a_hanging_rank_is_killed_at_the_deadline():
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"ranks \[0\] still running after 8 s"):
        run_local(_hangs_on_rank_0, 2, deadline=8)
    assert time.monotonic() - start < 20
