"""How normgrad's kernels share the cores with PyTorch's inside a model: one training step
of each model at 2 threads, torch.nn's norms against normgrad's, under each thread policy,
with the CPU time every thread of the process spent per step (the thread timeline in
numbers: a step that keeps 2 cores busy for 1.3 wall-clock step is fighting).

    .venv/bin/python benchmarks/threads.py            # every policy, each in its own process
    .venv/bin/python benchmarks/threads.py --trace t.json   # also a chrome://tracing timeline

Policies: ``NUMBA_THREADING_LAYER`` (omp: a second OpenMP runtime beside torch's;
workqueue: Numba's own pool of sleeping workers), each in its own process, and where the
kernels go parallel ("serial": never; "from 2**20": only from 2**20 elements; "parallel":
from ``kernels.PARALLEL_MIN_SIZE``), interleaved in one process. ``LAYERS=omp`` runs one layer.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

LAYERS = tuple(os.environ.get("LAYERS", "omp,workqueue").split(","))
# where the kernels go parallel: never, only from 2**20 elements (normgrad's rule beside torch
# before this benchmark), or from kernels.PARALLEL_MIN_SIZE (the rule everywhere now)
BESIDE = {"serial": 1 << 62, "from 2**20": 1 << 20, "parallel": None}


def _cpu_by_thread() -> dict[int, float]:
    """CPU seconds (user + system) of every thread of this process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _models(torch):
    nn = torch.nn

    def conv(norm, c_in, c):
        return nn.Sequential(nn.Conv2d(c_in, c, 3, padding=1), norm(c), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1),
                             norm(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))

    return {
        "MLP BN1d": (nn.Sequential(nn.Linear(512, 1024), nn.BatchNorm1d(1024), nn.ReLU(), nn.Linear(1024, 1024),
                                   nn.BatchNorm1d(1024), nn.ReLU(), nn.Linear(1024, 10)), (256, 512)),
        "conv BN2d": (conv(nn.BatchNorm2d, 16, 32), (32, 16, 32, 32)),
        "conv GN": (conv(lambda c: nn.GroupNorm(8, c), 16, 64), (16, 16, 28, 28)),
        "block LN": (nn.Sequential(nn.LayerNorm(512), nn.Linear(512, 2048), nn.GELU(), nn.Linear(2048, 512),
                                   nn.LayerNorm(512)), (8, 256, 512)),
    }


def _beside(threshold: int | None, step):
    from normgrad.kernels import _dispatch

    default = dict(_dispatch.PARALLEL_MIN_SIZE)

    def run():
        _dispatch.PARALLEL_MIN_SIZE.update(default if threshold is None else dict.fromkeys(default, threshold))
        return step()
    return run


def child(layer: str, trace: str | None) -> None:
    import torch

    torch.set_num_threads(2)
    import normgrad.torch as nt
    from normgrad.bench.timing import time_blocks

    torch.manual_seed(0)
    rows = {}
    for name, (theirs, shape) in _models(torch).items():
        x = torch.randn(shape)
        ours = nt.convert_norms(copy.deepcopy(theirs))
        steps = {"torch.nn": lambda: theirs(x).sum().backward()}
        for where, threshold in BESIDE.items():
            steps[where] = _beside(threshold, lambda: ours(x).sum().backward())
        ms = time_blocks(steps, rounds=9, settle_s=0.2)
        busy = {}
        for side, step in steps.items():
            n, before, start = 20, _cpu_by_thread(), time.perf_counter()
            for _ in range(n):
                step()
            wall, after = (time.perf_counter() - start) / n, _cpu_by_thread()
            per_thread = sorted((after[t] - before.get(t, 0.0)) / n / wall for t in after)
            busy[side] = [round(b, 2) for b in per_thread if b > 0.005]
        rows[name] = {"ms": ms, "cores busy per thread": busy}
        if trace and name == "conv GN":
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    steps["serial"]()
            prof.export_chrome_trace(trace)
    print(json.dumps(rows))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
        return
    trace = sys.argv[sys.argv.index("--trace") + 1] if "--trace" in sys.argv else None
    for layer in LAYERS:
        env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
        args = [sys.executable, __file__, "--child", layer]
        if trace:  # one trace per layer, beside the path given: omp-t.json, workqueue-t.json
            args.append(str(Path(trace).with_name(f"{layer}-{Path(trace).name}")))
        out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
        for name, row in json.loads(out).items():
            ms = row["ms"]
            print(f"   busy {row['cores busy per thread']}")
            ratios = "  ".join(f"{k} {v / ms['torch.nn']:.2f}" for k, v in ms.items() if k != "torch.nn")
            print(f"{layer:9} {name:10} torch.nn {ms['torch.nn']:7.2f} ms; normgrad / torch.nn: {ratios}")


if __name__ == "__main__":
    main()
