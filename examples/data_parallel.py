"""Data-parallel training with synchronized batch norm, on CPUs.

Each process trains on its own shard of every batch (here deliberately uneven);
batch norm normalizes with the statistics of the whole batch. Two models are
trained: a normgrad MLP (NumPy, through TorchCommunicator) and a PyTorch MLP
under DistributedDataParallel with normgrad's SyncBatchNorm.

One machine, two processes:
    torchrun --standalone --nproc-per-node 2 examples/data_parallel.py
Several machines: run this on each of the N machines (I = 0..N-1), with HOST0
the address of machine 0, reachable from all of them:
    torchrun --nnodes N --node-rank I --nproc-per-node 2 \\
        --master-addr HOST0 --master-port 29500 examples/data_parallel.py
Alone, as a single process:
    python examples/data_parallel.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

import normgrad.torch as nt
from normgrad.data import load_digits
from normgrad.data_parallel import train
from normgrad.nn.distributed import LocalCommunicator, shard_bounds


def join_group(timeout_s: float) -> None:
    """Join the process group torchrun describes, or make a one-process group."""
    if dist.is_initialized():
        return
    if "RANK" in os.environ:  # started by torchrun: it set RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
    else:
        store = os.path.join(tempfile.mkdtemp(), "store")
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)


def uneven_shards(batch_size: int, world_size: int) -> list[int]:
    """Rank r gets a share proportional to r + 1: shards of different sizes on purpose."""
    weights = np.arange(1, world_size + 1)
    sizes = (batch_size * weights // weights.sum()).tolist()
    sizes[-1] += batch_size - sum(sizes)
    return sizes


def numpy_mlp(args, data, shards, say) -> None:
    comm = nt.TorchCommunicator(timeout=args.timeout)
    kwargs = dict(hidden=(64, 64), steps=args.steps, batch_size=args.batch_size, learning_rate=3e-3,
                  record_params=True)
    result = train(comm, data["X_train"], data["y_train"], shards=shards,
                   on_step=lambda s, loss, acc: say(f"  step {s + 1:3d}  loss {loss:.4f}  batch accuracy {acc:.2f}")
                   if (s + 1) % args.every == 0 else None, **kwargs)
    model = result["model"].eval()
    val = (model.forward(data["X_val"]).argmax(axis=1) == data["y_val"]).mean()
    say(f"  validation accuracy {val:.3f}; {comm.calls // args.steps} all-reduces per step on this rank "
        "(with several ranks: 2 per batch-norm layer, 1 for the gradients)")
    if comm.rank == 0:  # the same run in one process, on the whole batch, for comparison
        single = train(LocalCommunicator(), data["X_train"], data["y_train"], **kwargs)
        diff = max(np.abs(a - b).max() for a, b in zip(result["params"], single["params"]))
        say(f"  one process on the global batch gives the same parameters: max difference {diff:.1e}")


def torch_mlp(args, data, shards, say) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.BatchNorm1d(64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 10)).double()
    model = nt.SyncBatchNorm.convert_sync_batchnorm(model, timeout=args.timeout)
    world, rank = dist.get_world_size(), dist.get_rank()
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    X, y = torch.from_numpy(data["X_train"]).double(), torch.from_numpy(data["y_train"])
    lo, hi = shard_bounds(args.batch_size, world, shards)[rank]
    opt = torch.optim.Adam(ddp.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)  # the same batches on every rank
    for step in range(args.steps):
        batch = torch.randperm(len(X), generator=g)[:args.batch_size][lo:hi]
        opt.zero_grad()
        # DDP averages gradients over ranks: scale so the average is the global batch's mean loss
        loss = torch.nn.functional.cross_entropy(ddp(X[batch]), y[batch], reduction="sum") * world / args.batch_size
        loss.backward()
        opt.step()
        if (step + 1) % args.every == 0:
            total = loss.detach().clone() / world
            dist.all_reduce(total)
            say(f"  step {step + 1:3d}  loss {total.item():.4f}")
    model.eval()
    with torch.no_grad():
        val = (model(torch.from_numpy(data["X_val"]).double()).argmax(1).numpy() == data["y_val"]).mean()
    say(f"  validation accuracy {val:.3f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--every", type=int, default=50, help="print every this many steps")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a peer before failing")
    args = parser.parse_args(argv)
    join_group(args.timeout)
    rank, world = dist.get_rank(), dist.get_world_size()
    shards = uneven_shards(args.batch_size, world)

    def say(text: str) -> None:
        if rank == 0:
            print(text, flush=True)

    data = load_digits()
    say(f"{world} process(es); rows of each batch of {args.batch_size} per rank: {shards}")
    say("normgrad MLP (NumPy), SyncBatchNorm through torch.distributed:")
    numpy_mlp(args, data, shards, say)
    say("PyTorch MLP, DistributedDataParallel + normgrad.torch.SyncBatchNorm:")
    torch_mlp(args, data, shards, say)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
