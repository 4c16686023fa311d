"""normgrad.nn.distributed in one process: ranks are threads joined by an in-memory
communicator, so every branch of the exchange is tested quickly; the real
processes (torch.distributed, gloo) are in tests/interop."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from normgrad import nn
from normgrad.data_parallel import train
from normgrad.core.stats import combine_moments
from normgrad.nn.distributed import (LocalCommunicator, SyncBatchNorm, SyncError, allreduce_grads,
                                     convert_sync_batchnorm, shard_bounds)


class _Threads:
    """world_size ranks as threads; allreduce_sum adds the buffers in rank order."""

    def __init__(self, world_size: int):
        self.world_size = world_size
        self.barrier = threading.Barrier(world_size, timeout=30)
        self.slots = [None] * world_size
        self.calls = 0

    def comm(self, rank):
        group = self

        class Comm:
            def __init__(self):
                self.rank, self.world_size = rank, group.world_size

            def allreduce_sum(self, buf):
                group.slots[rank] = np.array(buf, dtype=np.float64)
                if group.barrier.wait() == 0:
                    group.total = np.sum(group.slots, axis=0)
                    group.calls += 1
                group.barrier.wait()
                out = group.total.copy()
                group.barrier.wait()
                return out

        return Comm()

    def run(self, fn):
        """[fn(rank, comm) for every rank], run concurrently; each entry a result or the exception."""
        results = [None] * self.world_size

        def target(r):
            try:
                results[r] = fn(r, self.comm(r))
            except Exception as err:  # returned for the test to inspect
                results[r] = err

        threads = [threading.Thread(target=target, args=(r,)) for r in range(self.world_size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a rank is still waiting"
        return results


def test_combine_moments_is_exact_for_uneven_parts_and_large_means(rng):
    x = rng.normal(1e8, 1.0, (40, 3))
    cuts = [0, 7, 7, 8, 40]  # an empty and a one-row part
    parts = [x[a:b] for a, b in zip(cuts, cuts[1:])]
    counts = np.array([len(p) for p in parts])
    means = np.stack([p.mean(0) if len(p) else np.zeros(3) for p in parts])
    m2 = np.stack([((p - p.mean(0)) ** 2).sum(0) if len(p) else np.zeros(3) for p in parts])
    n, mean, total_m2 = combine_moments(counts, means, m2)
    assert n == 40
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-15)
    np.testing.assert_allclose(total_m2 / n, x.var(0), rtol=1e-7)  # x itself holds only ~1e-8 of it
    naive = (x**2).mean(0) - x.mean(0) ** 2  # what the combination avoids
    assert np.abs(naive - x.var(0)).max() > 1e-3


@pytest.mark.parametrize("shape_tail", [(), (2, 3)])
@pytest.mark.parametrize("shards", [(5, 17, 1), (4, 0, 3), (0, 6)])
def test_sync_batchnorm_equals_batchnorm_on_the_whole_batch(rng, shards, shape_tail):
    C = 4
    n = sum(shards)
    bounds = shard_bounds(n, len(shards), shards)
    gamma, beta = rng.normal(1, 0.5, C), rng.normal(0, 0.5, C)
    batches = [(rng.normal(3, 2, (n, C, *shape_tail)), rng.normal(size=(n, C, *shape_tail))) for _ in range(3)]
    ref = nn.BatchNorm2d(C, dtype=np.float64) if shape_tail else nn.BatchNorm1d(C, dtype=np.float64)
    ref.params["weight"][:], ref.params["bias"][:] = gamma, beta
    want = []
    for x, g in batches:
        want.append((ref.forward(x), ref.backward(g), ref.grads["weight"].copy(), ref.grads["bias"].copy()))

    def rank(r, comm):
        bn = SyncBatchNorm(C, comm=comm, dtype=np.float64)
        bn.params["weight"][:], bn.params["bias"][:] = gamma, beta
        got = []
        for x, g in batches:
            lo, hi = bounds[r]
            y = bn.forward(x[lo:hi])
            got.append((y, bn.backward(g[lo:hi]), bn.grads["weight"], bn.grads["bias"]))
        return got, bn.state_dict()

    group = _Threads(len(shards))
    results = group.run(rank)
    assert group.calls == 1 + 2 * len(batches)  # the layout check, then 2 per step
    for step, (y, dx, dw, db) in enumerate(want):
        np.testing.assert_allclose(np.concatenate([res[0][step][0] for res in results]), y, atol=1e-12)
        np.testing.assert_allclose(np.concatenate([res[0][step][1] for res in results]), dx, atol=1e-12)
        np.testing.assert_allclose(sum(res[0][step][2] for res in results), dw, atol=1e-12)
        np.testing.assert_allclose(sum(res[0][step][3] for res in results), db, atol=1e-12)
    for _, state in results:
        for key, value in ref.state_dict().items():
            np.testing.assert_allclose(state[key], value, atol=1e-12, err_msg=key)


def _bad_rank_run(world, make_input, backward_input=None):
    def rank(r, comm):
        bn = SyncBatchNorm(3, comm=comm, dtype=np.float64)
        x = make_input(r)
        y = bn.forward(x)
        return bn.backward(backward_input(r, y) if backward_input else np.ones_like(y))

    return _Threads(world).run(rank)


def test_bad_input_on_one_rank_stops_every_rank():
    res = _bad_rank_run(3, lambda r: np.ones((2, 4 if r == 1 else 3)))
    assert isinstance(res[1], ValueError) and "expected input of shape (N, 3, ...), got (2, 4)" in str(res[1])
    for r in (0, 2):
        assert isinstance(res[r], SyncError) and "rank 1 of 3: its input has 4 channels, expected 3" in str(res[r])
    res = _bad_rank_run(2, lambda r: np.full((2, 3), np.nan) if r == 0 else np.ones((2, 3)))
    assert isinstance(res[0], ValueError) and "NaN" in str(res[0])
    assert isinstance(res[1], SyncError) and "rank 0 of 2" in str(res[1])
    res = _bad_rank_run(2, lambda r: np.ones((2, 3), dtype=np.int64) if r == 1 else np.ones((2, 3)))
    assert isinstance(res[1], TypeError) and isinstance(res[0], SyncError)
    res = _bad_rank_run(2, lambda r: np.arange(3.0 * (r == 0)).reshape(-1, 3))  # one row in all
    assert all(isinstance(e, ValueError) and "more than 1 value per channel" in str(e) for e in res)


def test_ranks_whose_modules_disagree_all_raise_before_any_statistics_exchange():
    group = _Threads(3)

    def rank(r, comm):
        bn = SyncBatchNorm(5 if r == 2 else 3, comm=comm, dtype=np.float64)
        return bn.forward(np.ones((2, bn.num_features)))

    res = group.run(rank)
    for r in range(3):
        assert isinstance(res[r], SyncError) and "disagree on num_features: [3, 3, 5]" in str(res[r]), res[r]
    assert group.calls == 1  # only the small layout check: no buffers of different sizes were exchanged


def test_bad_upstream_gradient_on_one_rank_stops_every_rank():
    x = np.random.default_rng(0).normal(size=(3, 3))
    res = _bad_rank_run(2, lambda r: x, lambda r, y: np.ones((2, 3)) if r == 0 else np.ones_like(y))
    assert isinstance(res[0], ValueError) and "dout must have the forward output's shape" in str(res[0])
    assert isinstance(res[1], SyncError) and "backward failed on 1 other rank" in str(res[1])
    res = _bad_rank_run(2, lambda r: x, lambda r, y: np.full_like(y, np.inf) if r == 1 else np.ones_like(y))
    assert isinstance(res[1], ValueError) and isinstance(res[0], SyncError)


def test_eval_mode_and_one_rank_do_not_communicate(rng):
    x = rng.normal(size=(6, 3))
    plain = nn.BatchNorm1d(3, dtype=np.float64)
    sync = SyncBatchNorm(3, comm=LocalCommunicator(), dtype=np.float64)
    np.testing.assert_array_equal(sync.forward(x), plain.forward(x))
    np.testing.assert_array_equal(sync.backward(x), plain.backward(x))
    group = _Threads(2)

    def rank(r, comm):
        bn = SyncBatchNorm(3, comm=comm, dtype=np.float64).eval()
        return bn.forward(x)

    fresh = nn.BatchNorm1d(3, dtype=np.float64).eval().forward(x)
    assert all(np.array_equal(y, fresh) for y in group.run(rank)) and group.calls == 0


def test_convert_and_allreduce_grads():
    net = nn.Sequential(nn.Linear(4, 5, seed=0), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2, seed=1))
    net.layers[1].buffers["running_var"][:] = 2.0
    comm = LocalCommunicator()
    out = convert_sync_batchnorm(net, comm)
    assert isinstance(out.layers[1], SyncBatchNorm) and out.layers[1].comm is comm
    assert out.layers[1].buffers["running_var"][0] == 2.0
    group = _Threads(3)

    def rank(r, comm):
        lin = nn.Linear(2, 2, seed=0)
        lin.grads["weight"] = np.full((2, 2), r + 1.0, dtype=np.float32)
        lin.grads["bias"] = np.full(2, 10.0 * r, dtype=np.float32)
        extra = allreduce_grads(lin, comm, r, 1.0)
        return lin.grads["weight"], lin.grads["bias"], extra

    for w, b, extra in group.run(rank):
        assert (w == 6).all() and (b == 30).all() and w.dtype == np.float32 and extra == [3.0, 3.0]
    with pytest.raises(TypeError, match="Communicator"):
        SyncBatchNorm(3, comm=object())
    with pytest.raises(ValueError, match="adding up to 5"):
        shard_bounds(5, 2, [2, 2])


def test_data_parallel_training_follows_single_process_step_for_step(rng):
    X, y = rng.normal(size=(300, 12)), rng.integers(0, 3, 300)
    kwargs = dict(hidden=(16, 16), steps=8, batch_size=23, learning_rate=1e-2, record_params=True)
    single = train(LocalCommunicator(), X, y, **kwargs)
    results = _Threads(3).run(lambda r, comm: train(comm, X, y, shards=(5, 17, 1), **kwargs))
    for res in results:
        np.testing.assert_allclose(res["losses"], single["losses"], rtol=1e-12)
        for step, (got, want) in enumerate(zip(res["params"], single["params"])):
            np.testing.assert_allclose(got, want, atol=1e-10, err_msg=f"step {step}")
    assert single["losses"][-1] < single["losses"][0]
