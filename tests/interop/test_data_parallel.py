"""Data-parallel training over real processes (gloo on 127.0.0.1) follows the
single-process run on the global batch step for step: a normgrad MLP through
TorchCommunicator, and a PyTorch model under DistributedDataParallel with
normgrad's SyncBatchNorm."""

from __future__ import annotations

import copy

import numpy as np
import torch

import normgrad.torch as nt
from normgrad.data_parallel import train
from normgrad.nn.distributed import LocalCommunicator, shard_bounds

from normgrad.torch.launch import run_local

SHARDS = (9, 14)
TRAIN = dict(hidden=(16, 16), steps=8, batch_size=sum(SHARDS), learning_rate=1e-2, record_params=True)


def _data():
    rng = np.random.default_rng(11)
    return rng.normal(size=(200, 10)), rng.integers(0, 3, 200)


def _numpy_worker(rank, world):
    X, y = _data()
    comm = nt.TorchCommunicator(timeout=20)
    result = train(comm, X, y, shards=SHARDS, **TRAIN)
    return dict(losses=result["losses"], params=result["params"], calls=comm.calls)


def test_numpy_mlp_data_parallel_follows_single_process():
    X, y = _data()
    single = train(LocalCommunicator(), X, y, **TRAIN)
    results = run_local(_numpy_worker, len(SHARDS))
    for res in results:
        np.testing.assert_allclose(res["losses"], single["losses"], rtol=1e-12)
        for step, (got, want) in enumerate(zip(res["params"], single["params"])):
            np.testing.assert_allclose(got, want, atol=1e-10, err_msg=f"step {step}")
        # once per batch-norm layer its layout check; then 2 per layer and 1 for the gradients each step
        assert res["calls"] == len(TRAIN["hidden"]) + TRAIN["steps"] * (2 * len(TRAIN["hidden"]) + 1)
    assert single["losses"][-1] < single["losses"][0]


def _torch_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 3)).double()


def _torch_steps(model, rows, world, steps=5):
    """SGD on the seeded global batches; ``rows`` picks this rank's part. The loss
    is scaled so that DDP's average over ranks is the global batch's mean loss."""
    X, y = (torch.from_numpy(a) for a in _data())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = torch.randperm(len(X), generator=g)[:sum(SHARDS)][rows]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X[batch]), y[batch], reduction="sum") * world / sum(SHARDS)
        loss.backward()
        opt.step()
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _ddp_worker(rank, world):
    model = nt.SyncBatchNorm.convert_sync_batchnorm(_torch_model(), timeout=20)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    lo, hi = shard_bounds(sum(SHARDS), world, SHARDS)[rank]
    state = _torch_steps(ddp, slice(lo, hi), world)
    return {k.removeprefix("module."): v for k, v in state.items()}


def test_torch_ddp_with_sync_batchnorm_follows_single_process():
    want = _torch_steps(copy.deepcopy(_torch_model()), slice(None), 1)
    for state in run_local(_ddp_worker, len(SHARDS)):
        assert state.keys() == want.keys()
        for key in want:
            np.testing.assert_allclose(state[key], want[key], rtol=1e-10, atol=1e-12, err_msg=key)


def _example_worker(rank, world):
    import contextlib
    import importlib.util
    import io
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "data_parallel.py"
    spec = importlib.util.spec_from_file_location("data_parallel_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        example.main(["--steps", "20", "--every", "10", "--timeout", "20"])
    return out.getvalue()


def test_example_runs_on_two_processes():
    """examples/data_parallel.py as torchrun would run it (the group made by the harness instead)."""
    printed, silent = run_local(_example_worker, 2)
    assert silent == ""  # only rank 0 prints
    assert "rows of each batch of 64 per rank: [21, 43]" in printed
    assert "5 all-reduces per step on this rank" in printed
    diff = float(printed.split("max difference ")[1].split()[0])
    assert diff < 1e-10, printed
    assert printed.count("validation accuracy") == 2
