"""normgrad.torch.SyncBatchNorm across real processes (gloo on 127.0.0.1): equal to
single-process batch norm on the concatenated batch, with uneven and empty
shards, large means, clear errors on every rank, and no hang when a peer dies."""

from __future__ import annotations

import os
import time
import zlib

import numpy as np
import pytest
import torch

import normgrad.torch as nt
from normgrad.core.sync import CountingCommunicator, SyncError
from normgrad.torch.launch import run_local

C = 4
STEPS = 3


def _case(name, shards, tail=(), dtype="float64", mean=3.0, torch_ops=False):
    """torch_ops: run the device-generic path (the one CUDA tensors take) instead of the kernels."""
    return dict(name=name, shards=shards, tail=tail, dtype=dtype, mean=mean, torch_ops=torch_ops)


def _global_batch(case, step):
    """The global batch of one step: x, upstream gradient g (random), as NumPy."""
    rng = np.random.default_rng([zlib.crc32(case["name"].encode()), step])
    shape = (sum(case["shards"]), C, *case["tail"])
    x = rng.normal(case["mean"], 2.0, shape).astype(case["dtype"])
    return x, rng.normal(size=shape).astype(case["dtype"])


def _set_affine(bn):
    """The same random weight and bias for every rank and the reference."""
    rng = np.random.default_rng(7)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(rng.normal(1, 0.5, C)))
        bn.bias.copy_(torch.from_numpy(rng.normal(0, 0.5, C)))


def _shard(case, rank, a):
    lo = sum(case["shards"][:rank])
    return a[lo:lo + case["shards"][rank]]


class CountingSyncBatchNorm(nt.SyncBatchNorm):
    """Counts the all-reduces of each forward + backward through a wrapping communicator."""

    def communicator(self):
        comm = super().communicator()
        self.counted = None if comm is None else CountingCommunicator(comm)
        return self.counted


def _sync_worker(rank, world, cases):
    out = {}
    for case in cases:
        nt.ops.FORCE_TORCH_OPS = case["torch_ops"]
        dtype = getattr(torch, case["dtype"])
        bn = CountingSyncBatchNorm(C, momentum=0.1, dtype=dtype, timeout=20)
        _set_affine(bn)
        steps = []
        for step in range(STEPS):
            x_all, g_all = _global_batch(case, step)
            x = torch.from_numpy(_shard(case, rank, x_all).copy()).requires_grad_()
            g = torch.from_numpy(_shard(case, rank, g_all).copy())
            bn.zero_grad()
            result = {}

            def fwd_bwd():
                y = bn(x)
                (y * g).sum().backward()
                result["y"] = y.detach().numpy().copy()

            fwd_bwd()
            result["allreduce_calls"] = bn.counted.calls
            result.update(dx=x.grad.numpy().copy(), dw=bn.weight.grad.numpy().copy(),
                          db=bn.bias.grad.numpy().copy())
            steps.append(result)
        out[case["name"]] = dict(steps=steps, running_mean=bn.running_mean.numpy().copy(),
                                 running_var=bn.running_var.numpy().copy(),
                                 tracked=int(bn.num_batches_tracked))
    return out


def _reference(case):
    """torch.nn.BatchNorm on the concatenated batch, in float64 (exact enough to judge float32)."""
    x0, _ = _global_batch(case, 0)
    bn = (torch.nn.BatchNorm1d if x0.ndim <= 3 else torch.nn.BatchNorm2d)(C, momentum=0.1, dtype=torch.float64)
    _set_affine(bn)
    steps = []
    for step in range(STEPS):
        x_all, g_all = _global_batch(case, step)
        x = torch.from_numpy(x_all.astype(np.float64)).requires_grad_()
        bn.zero_grad()
        y = bn(x)
        (y * torch.from_numpy(g_all.astype(np.float64))).sum().backward()
        steps.append(dict(y=y.detach().numpy(), dx=x.grad.numpy(), dw=bn.weight.grad.numpy(),
                          db=bn.bias.grad.numpy()))
    return dict(steps=steps, running_mean=bn.running_mean.numpy(), running_var=bn.running_var.numpy())


def _close(actual, desired, dtype, what):
    """1e-12 in float64, 1e-5 in float32, relative to the size of the quantity."""
    tol = 1e-12 if dtype == "float64" else 1e-5
    scale = max(1.0, float(np.abs(desired).max()) if desired.size else 1.0)
    np.testing.assert_allclose(actual, desired, rtol=0, atol=tol * scale, err_msg=what)


def _check_against_reference(results, cases):
    world = len(results)
    for case in cases:
        ref = _reference(case)
        name, dtype = case["name"], case["dtype"]
        for step in range(STEPS):
            per_rank = [r[name]["steps"][step] for r in results]
            want = ref["steps"][step]
            for key in ("y", "dx"):
                got = np.concatenate([p[key] for p in per_rank])
                assert got.dtype == np.dtype(dtype)
                _close(got, want[key], dtype, f"{name} step {step} {key}")
            for key in ("dw", "db"):  # each rank's covers its shard; data parallelism sums them
                _close(np.sum([p[key] for p in per_rank], axis=0), want[key], dtype, f"{name} step {step} {key}")
            # the first step checks once that the ranks' layers agree; then one all-reduce forward, one backward
            assert [p["allreduce_calls"] for p in per_rank] == [3 if step == 0 else 2] * world
        for r in results:
            _close(r[name]["running_mean"], ref["running_mean"], dtype, f"{name} running_mean")
            _close(r[name]["running_var"], ref["running_var"], dtype, f"{name} running_var")
            assert r[name]["tracked"] == STEPS


def _cases(shards):
    cases = []
    for tail in ((), (3, 2)):
        for dtype, mean in (("float64", 3.0), ("float32", 3.0), ("float32", 1e4)):
            cases.append(_case(f"{dtype}-mean{mean:g}-{len(tail)}d-{shards}", shards, tail, dtype, mean))
    cases.append(_case(f"torch-ops-{shards}", shards, (3,), torch_ops=True))
    return cases


@pytest.mark.parametrize("shards", [(5, 17), (5, 17, 1)], ids=["2 ranks", "3 ranks"])
def test_sync_batchnorm_equals_batchnorm_on_concatenated_batch(shards):
    cases = _cases(shards)
    results = run_local(_sync_worker, len(shards), cases)
    _check_against_reference(results, cases)


def test_rank_with_empty_shard_takes_part():
    cases = [_case("empty-middle", (5, 0, 4)), _case("empty-first-2d", (0, 3, 2), tail=(2, 2), dtype="float32")]
    results = run_local(_sync_worker, 3, cases)
    _check_against_reference(results, cases)
    assert results[1]["empty-middle"]["steps"][0]["y"].shape == (0, C)


def _error_worker(rank, world):
    """Bad input on one rank: every rank must raise, none may wait. Then the group still works."""
    torch.manual_seed(rank)
    bn = nt.SyncBatchNorm(C, timeout=20)
    messages = {}

    def attempt(name, x):
        try:
            bn(x).sum().backward()
            messages[name] = "no error"
        except (ValueError, TypeError, SyncError) as err:
            messages[name] = f"{type(err).__name__}: {err}"

    attempt("channels", torch.randn(3, C + 1 if rank == 1 else C))
    attempt("nan", torch.full((3, C), float("nan")) if rank == 2 else torch.randn(3, C))
    attempt("integer", torch.ones(3, C, dtype=torch.int64) if rank == 0 else torch.randn(3, C))
    attempt("rank1", torch.randn(3) if rank == 1 else torch.randn(3, C))
    attempt("one value", torch.randn(1 if rank == 0 else 0, C))
    x = torch.randn(2 + rank, C, requires_grad=True)
    bn(x).pow(2).sum().backward()
    messages["after"] = bool(torch.isfinite(x.grad).all())
    return messages


def test_bad_input_on_one_rank_raises_clearly_on_every_rank():
    m = run_local(_error_worker, 3)
    assert "expected input of shape (N, 4, ...), got (3, 5)" in m[1]["channels"]
    for r in (0, 2):
        assert m[r]["channels"].startswith("SyncError") and "rank 1 of 3: its input has 5 channels" in m[r]["channels"]
    assert "NaN" in m[2]["nan"] and all("rank 2 of 3" in m[r]["nan"] for r in (0, 1))
    assert m[0]["integer"].startswith("TypeError") and all("rank 0 of 3" in m[r]["integer"] for r in (1, 2))
    assert "got (3,)" in m[1]["rank1"] and all("rank 1 of 3" in m[r]["rank1"] for r in (0, 2))
    assert all("more than 1 value per channel" in m[r]["one value"] for r in range(3))
    assert all(m[r]["after"] is True for r in range(3))


def _mismatch_worker(rank, world):
    """Ranks that built different models: gloo would abort on buffers of different sizes."""
    bn = CountingSyncBatchNorm(C + 1 if rank == 1 else C, timeout=20)
    try:
        bn(torch.randn(3, bn.num_features))
        return "no error"
    except SyncError as err:
        return f"{bn.counted.calls} {err}"


def test_ranks_with_different_modules_raise_instead_of_aborting():
    messages = run_local(_mismatch_worker, 2)
    for m in messages:
        assert m.startswith("1 ") and "disagree on num_features: [4, 5]" in m, m


def _dying_worker(rank, world, how):
    torch.manual_seed(rank)
    bn = nt.SyncBatchNorm(C, timeout=3)
    if rank == 1:
        if how == "exit":
            os._exit(3)  # dies without a word
        time.sleep(8)  # alive but never joins the all-reduce
        return "slept"
    start = time.monotonic()
    try:
        bn(torch.randn(4, C))
    except SyncError as err:
        return f"{time.monotonic() - start:.1f}s {err}"
    return "no error"


@pytest.mark.parametrize("how", ["exit", "stall"])
def test_lost_peer_gives_an_error_not_a_hang(how):
    results = run_local(_dying_worker, 2, how, deadline=60, allow_missing=(1,))
    message = results[0]
    assert "rank 0 of 2" in message and "a peer died" in message, message
    assert float(message.split("s ")[0]) < 8, message  # the 3 s timeout, not the 30 s group one
