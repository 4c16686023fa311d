"""A gradient-penalty step through batch norm: torch.nn.BatchNorm2d against normgrad.torch's,
with the fused double backward ("normgrad") and with the create_graph path it replaced
(torch operations, statistics recomputed: "normgrad before"), and the same net without any
norm (the floor the convolutions set). Interleaved medians (``bench.timing.time_blocks``).

A step: forward, ``torch.autograd.grad(out.sum(), x, create_graph=True)``, penalty
``((g.flatten(1).norm(dim=1) - 1)**2).mean()`` plus ``out.square().mean()``, ``.backward()``.
Net: Conv2d(3, 32, 3, pad 1), BatchNorm2d(32), ReLU, Conv2d(32, 32, 3, pad 1), BatchNorm2d(32),
ReLU, pool, Linear; input 32x3x32x32 float32.

    .venv/bin/python benchmarks/gradient_penalty.py [--repeats 3] [--one-thread] [--cpu-time]

--one-thread: torch and Numba on one thread each; --cpu-time: medians of process CPU time
(blocks of 5 steps) instead of wall time, which other processes on a shared machine disturb
less (meaningful with --one-thread).
"""

from __future__ import annotations

import argparse
import copy
import time

import numba
import numpy as np
import torch
from torch import nn

import normgrad.torch as nt
from normgrad.bench.timing import time_blocks
from normgrad.torch import _double_backward


def net(norm):
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), norm(32), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1),
                         norm(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def step(model, x):
    def run():
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        (g,) = torch.autograd.grad(out.sum(), xi, create_graph=True)
        loss = ((g.flatten(1).norm(dim=1) - 1) ** 2).mean() + out.square().mean()
        model.zero_grad(set_to_none=True)
        loss.backward()
    return run


def cpu_blocks(fns: dict, rounds: int, before: dict, calls: int = 5) -> dict[str, float]:
    """Median over rounds of each function's mean CPU ms over ``calls`` calls, interleaved."""
    times = {name: [] for name in fns}
    for name, fn in fns.items():
        before[name]()
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            before[name]()
            t = time.process_time()
            for _ in range(calls):
                fn()
            times[name].append((time.process_time() - t) / calls)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--one-thread", action="store_true")
    parser.add_argument("--cpu-time", action="store_true")
    args = parser.parse_args(argv)
    if args.one_thread:
        torch.set_num_threads(1)
        numba.set_num_threads(1)
    torch.manual_seed(0)
    model = net(nn.BatchNorm2d)
    ours = nt.convert_norms(copy.deepcopy(model))
    x = torch.randn(32, 3, 32, 32)
    fused = _double_backward.applies

    def path(on_kernels: bool):
        def choose():
            _double_backward.applies = fused if on_kernels else (lambda *a: False)
        return choose

    fns = {"torch.nn": step(model, x), "normgrad": step(ours, x), "normgrad before": step(ours, x),
           "no norm": step(net(lambda c: nn.Identity()), x)}
    before = {"torch.nn": path(True), "normgrad": path(True), "normgrad before": path(False), "no norm": path(True)}
    try:
        for _ in range(args.repeats):
            if args.cpu_time:
                t = cpu_blocks(fns, args.rounds, before)
            else:
                t = time_blocks(fns, rounds=args.rounds, block_s=0.3, before=before)
            print("  ".join(f"{k} {v:.1f} ms ({v / t['torch.nn']:.2f}x)" for k, v in t.items()), flush=True)
    finally:
        _double_backward.applies = fused
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
