"""normgrad.torch inside whole PyTorch models: one training step, torch.nn's norms against
normgrad's, eager and under ``torch.compile``, at 1 and 2 threads.

Each model is built once with ``torch.nn`` norms and copied (``copy.deepcopy``, so the
same weights) into one with normgrad's (``normgrad.torch.convert_norms``). A step is a
forward in training mode, a loss and a backward:

- MLP 512-1024-1024-10, BatchNorm1d after each hidden Linear, ReLU; batch 256, cross-entropy;
- conv net: 2 x (3x3 conv to 32 channels, BatchNorm2d, ReLU), pooling, a linear head;
  input 32x16x32x32, cross-entropy;
- conv net: 2 x (3x3 conv to 64 channels, GroupNorm(8, 64), ReLU), pooling, a linear
  head; input 16x16x28x28, cross-entropy;
- a pre-norm transformer-style MLP block, x + MLP(LayerNorm(x)) (512-2048-512, GELU),
  then a final LayerNorm; input 8x256x512 (2048 tokens), mean squared error to a random target;
- a gradient penalty through 2 BatchNorm2d (Conv2d(3, 32), BN, ReLU, Conv2d(32, 32), BN,
  ReLU, pooling, Linear; input 32x3x32x32): ``g = d out.sum() / dx`` with
  ``create_graph=True``, loss ``out.mean() + mean((|g| - 1)^2)``, backward through it
  (double backward); eager only, ``torch.compile`` does not do double backward.

Both sides must give the same loss: the largest |normgrad's loss - torch.nn's| is
reported per row. Then the per-call overhead, eager: layer norm forward + backward on
(256, 1024) float32 and batch norm on (8, 16), in microseconds per call.

Each thread count runs in a fresh process (``child``, JSON back on stdout) that sets
PyTorch's and Numba's thread counts (``norms.set_threads``) before it builds anything,
so no setting of one count leaks into the other. In a process the variants of a model
are timed in interleaved blocks (``timing.time_blocks``). The first compiled call of
each side (compilation included, with inductor's on-disk cache as found) is reported.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
import traceback

import torch

from .norms import set_threads
from .timing import keep_freed_memory, time_blocks

THREADS = (1, 2)
TARGET = 0.95  # normgrad / torch.nn, a model's step
PENALTY_TARGET = 0.5  # normgrad / torch.nn, the gradient-penalty step


def _conv_net(in_channels: int, channels: int, norm) -> torch.nn.Sequential:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1), norm(), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1), norm(), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


class PreNormBlock(torch.nn.Module):
    """x + MLP(LayerNorm(x)), then a final LayerNorm; x of shape (N, T, D)."""

    def __init__(self, D: int = 512, hidden: int = 2048):
        super().__init__()
        self.norm = torch.nn.LayerNorm(D)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(D, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, D))
        self.final_norm = torch.nn.LayerNorm(D)

    def forward(self, x):
        return self.final_norm(x + self.mlp(self.norm(x)))


def _cross_entropy(out, target):
    return torch.nn.functional.cross_entropy(out, target)


def _penalized(model, x, target):
    """out.mean() + mean over samples of (|d out.sum() / dx| - 1)^2, the graph kept for backward."""
    out = model(x)
    g, = torch.autograd.grad(out.sum(), x, create_graph=True)
    return out.mean() + ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()


def model_cases(quick: bool) -> list[dict]:
    """label, torch.nn model, input, target, loss(model, x, target), compile?, ratio target."""
    nn = torch.nn
    g = torch.Generator().manual_seed(0)

    def classes(n):
        return torch.randint(10, (n,), generator=g)

    def plain(loss):
        return lambda model, x, target: loss(model(x), target)

    mlp = nn.Sequential(nn.Linear(512, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
                        nn.Linear(1024, 1024), nn.BatchNorm1d(1024), nn.ReLU(), nn.Linear(1024, 10))
    tokens = torch.randn(8, 256, 512, generator=g)
    cases = [
        ("MLP, BatchNorm1d", mlp, torch.randn(256, 512, generator=g), classes(256),
         plain(_cross_entropy), True, TARGET),
        ("conv, BatchNorm2d", _conv_net(16, 32, lambda: nn.BatchNorm2d(32)),
         torch.randn(32, 16, 32, 32, generator=g), classes(32), plain(_cross_entropy), not quick, TARGET),
        ("conv, GroupNorm", _conv_net(16, 64, lambda: nn.GroupNorm(8, 64)),
         torch.randn(16, 16, 28, 28, generator=g), classes(16), plain(_cross_entropy), not quick, TARGET),
        ("block, LayerNorm", PreNormBlock(512, 2048), tokens,
         torch.randn(tokens.shape, generator=g), plain(torch.nn.functional.mse_loss), not quick, TARGET),
        ("grad penalty, BN2d", _conv_net(3, 32, lambda: nn.BatchNorm2d(32)),
         torch.randn(32, 3, 32, 32, generator=g).requires_grad_(), None, _penalized, False, PENALTY_TARGET),
    ]
    return [dict(zip(("label", "model", "x", "target", "loss", "compile", "target_ratio"), c)) for c in cases]


def _step(model, params, case):
    """One training step; returns the loss. ``params``: the eager model's, their grads cleared first."""
    x, target, loss_fn = case["x"], case["target"], case["loss"]

    def step():
        for p in params:
            p.grad = None
        x.grad = None
        loss = loss_fn(model, x, target)
        loss.backward()
        return loss.item()

    return step


def _summary(e: Exception) -> str:
    """The exception's type, first line and the innermost frame, on one line."""
    frame = traceback.extract_tb(e.__traceback__)[-1]
    first = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {first[:300]} (at {frame.filename}:{frame.lineno} in {frame.name})"


NATIVE_NORMS = ("aten::native_batch_norm", "aten::native_group_norm", "aten::native_layer_norm")


def norm_share(step, steps: int = 5) -> float:
    """The fraction of a torch.nn step's time inside torch's norm kernels (forward and
    backward, from the profiler): a model with normgrad's norms can be at best
    1 - share of it, were normgrad's norms free."""
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall_us = (time.perf_counter() - start) * 1e6
    norms_us = sum(e.cpu_time_total for e in prof.key_averages() if e.key.startswith(NATIVE_NORMS))
    return norms_us / wall_us


def _time_model(case: dict, rounds: int, block_s: float, settle_s: float) -> list[dict]:
    """Rows of one model (eager, and compiled when the case says so): medians, ratios, loss differences."""
    import normgrad.torch as nt

    theirs = case["model"]
    ours = nt.convert_norms(copy.deepcopy(theirs))  # convert_norms shares parameters: convert a copy
    sides = {"torch.nn": theirs, "normgrad": ours}
    modes = ("eager", "compiled") if case["compile"] else ("eager",)
    steps, losses, first_call_s, errors = {}, {}, {}, {}
    for mode in modes:
        if mode == "compiled":
            torch._dynamo.reset()  # the models share nn.Sequential.forward: start its cache afresh for each model
        for side, model in sides.items():
            name = f"{side} {mode}"
            run = model if mode == "eager" else torch.compile(model)
            step = _step(run, list(model.parameters()), case)
            start = time.perf_counter()
            try:
                losses[name] = step()
            except Exception as e:  # a model that does not compile is a result, not a crash of the benchmark
                errors[name] = _summary(e)
                continue
            if mode == "compiled":
                first_call_s[side] = time.perf_counter() - start
            steps[name] = step
    ms = time_blocks(steps, rounds=rounds, block_s=block_s, settle_s=settle_s)
    rows = []
    for mode in modes:
        row = {"model": case["label"], "mode": mode, "target": case["target_ratio"]}
        names = {side: f"{side} {mode}" for side in sides}
        if any(n in errors for n in names.values()):
            row["error"] = "; ".join(f"{n}: {errors[n]}" for n in names.values() if n in errors)
        else:
            row.update(torch_ms=ms[names["torch.nn"]], normgrad_ms=ms[names["normgrad"]],
                       loss=losses[names["torch.nn"]],
                       max_abs_loss_diff=abs(losses[names["normgrad"]] - losses[names["torch.nn"]]))
            row["ratio"] = row["normgrad_ms"] / row["torch_ms"]
            if mode == "eager":
                row["torch_norm_share"] = norm_share(steps[names["torch.nn"]])
            row["met"] = row["ratio"] <= case["target_ratio"]
        if mode == "compiled":
            row["first_call_s"] = first_call_s
        rows.append(row)
    return rows


def overhead_cases() -> list[tuple[str, str, tuple, tuple]]:
    """label, module name (in torch.nn and normgrad.torch), constructor args, input shape."""
    return [("LayerNorm 256x1024", "LayerNorm", (1024,), (256, 1024)),
            ("BatchNorm1d 8x16", "BatchNorm1d", (16,), (8, 16))]


def _time_overhead(rounds: int, settle_s: float) -> list[dict]:
    """Microseconds per forward + backward call of torch.nn's module and normgrad's, eager."""
    import normgrad.torch as nt

    rows = []
    for label, name, args, shape in overhead_cases():
        g = torch.Generator().manual_seed(1)
        x = torch.randn(shape, generator=g).requires_grad_()
        dy = torch.randn(shape, generator=g)
        fns = {}
        for side, module in (("torch.nn", getattr(torch.nn, name)(*args)), ("normgrad", getattr(nt, name)(*args))):
            def call(m=module):
                x.grad = None
                m.zero_grad(set_to_none=True)
                m(x).backward(dy)

            fns[side] = call
        ms = time_blocks(fns, rounds=rounds, block_s=0.05, settle_s=settle_s)
        us = {side: 1e3 * v for side, v in ms.items()}
        rows.append({"case": label, "torch_us": us["torch.nn"], "normgrad_us": us["normgrad"],
                     "overhead_us": us["normgrad"] - us["torch.nn"]})
    return rows


def child(threads: int, quick: bool) -> None:
    """The work of one thread count, in a fresh process: prints one line of JSON."""
    keep_freed_memory()
    set_threads(threads, torch)  # before any model or tensor exists
    rounds, block_s, settle_s = (2, 0.03, 0.05) if quick else (7, 0.1, 0.15)
    torch.manual_seed(0)
    rows = []
    for case in model_cases(quick):
        rows += _time_model(case, rounds, block_s, settle_s)
    overhead = _time_overhead(3 if quick else 9, settle_s)
    for row in rows + overhead:
        row["threads"] = threads
    print(json.dumps({"models": rows, "call_overhead": overhead}))


def model_rows(quick: bool = False, threads=THREADS, timeout_s: float = 1800) -> dict[str, list[dict]]:
    """Every thread count's rows, each from its own process: {"models": [...], "call_overhead": [...]}."""
    result = {"models": [], "call_overhead": []}
    for n in threads:
        code = f"from normgrad.bench.models import child; child({int(n)}, {bool(quick)})"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)
        if out.returncode != 0:
            raise RuntimeError(f"the {n}-thread model benchmark failed:\n{out.stderr[-4000:]}")
        part = json.loads(out.stdout.strip().splitlines()[-1])
        for key in result:
            result[key] += part[key]
    return result
