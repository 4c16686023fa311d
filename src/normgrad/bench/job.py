"""``normgrad bench``: every norm's kernels against PyTorch and against the machine's memory.

In one run, on this machine:

1. the memory bandwidth (``bandwidth``: STREAM-style copy and triad, arrays far larger
   than the last-level cache, best of several, 1 and 2 threads);
2. every norm's fused forward + backward against PyTorch's, float32 and float64, 1 and 2
   threads (``norms``), with the fraction of the bandwidth roofline reached;
3. the readable NumPy backward: staged against closed form;
4. the first-call compile cost of the kernels and the float32 error at a large mean;
5. one training step of the demo's MLP against the same model in PyTorch;
6. one training step of whole PyTorch models (MLP and conv nets with batch norm, a conv
   net with group norm, a pre-norm block with layer norm, a gradient penalty through batch
   norm) with normgrad.torch's norms against torch.nn's, eager and under torch.compile,
   at 1 and 2 threads, each in its own process, and the per-call overhead of small
   calls (``models``), when PyTorch is installed;
7. SyncBatchNorm over 2 processes (``distributed``), when PyTorch is installed.

The tables are ``tables``; the timing rules ``timing``.

Freed memory is kept for reuse (``mallopt``) for the whole run: a fresh allocation of a
large array costs page faults, zeroing it, which would swamp the kernels' own time on
both sides and depends on the allocator's history. The timings are steady-state ones.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .. import functional as F
from .. import kernels
from ..demo.gradchecks import large_mean_case
from ..outputs import atomic_write, check_output_file
from . import bandwidth
from .layouts import channels_last_rows
from .masked import masked_rows
from .norms import CASES, QUICK_CASES, set_threads, time_case
from .timing import keep_freed_memory, time_blocks


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def functional_backward_ms(shape, dtype) -> dict[str, float]:
    """Median ms of the staged and the closed-form NumPy backward of batch norm (1 thread of NumPy)."""
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, shape).astype(dtype)
    gamma, beta = rng.normal(1, 0.1, shape[1]).astype(dtype), np.zeros(shape[1], dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    _, cache = F.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    return time_blocks({"staged": lambda: F.batchnorm_backward(dy, cache),
                        "closed": lambda: F.batchnorm_backward_alt(dy, cache)}, rounds=5, settle_s=0.02)


def compile_cost() -> dict[str, float]:
    """First-call seconds of the fused kernels (batch and layer norm, both dtypes, small
    and large inputs) in a fresh process: with an empty Numba cache, then with it filled."""
    code = (
        "import time, numpy as np\n"
        "t = time.perf_counter()\n"
        "from normgrad import kernels\n"
        "for dt in (np.float32, np.float64):\n"
        "    for n in (8, 4096):\n"
        "        x = np.random.default_rng(0).normal(size=(n, 64)).astype(dt)\n"
        "        y, stats = kernels.batchnorm_forward(x, np.ones(64), np.zeros(64), training=True)\n"
        "        kernels.batchnorm_backward(x, x, np.ones(64), stats)\n"
        "        y, stats = kernels.layernorm_forward(x, np.ones(64), np.zeros(64))\n"
        "        kernels.layernorm_backward(x, x, np.ones(64), stats)\n"
        "print(time.perf_counter() - t)\n"
    )
    result = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("first call, empty cache (s)", "first call, cached (s)"):
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                 timeout=600, check=True)
            result[label] = float(out.stdout.strip().splitlines()[-1])
    return result


def large_mean_errors(torch, n: int = 65536, d: int = 64) -> dict[str, float]:
    """Max |out - float64 reference| of batch norm for float32 data with mean 1e4, std 1."""
    x, gamma, beta, ref = large_mean_case(n, d, 1e4, seed=2)
    outs = {
        "numpy (functional)": F.batchnorm_forward(x, gamma, beta, {"mode": "train"})[0],
        "fused": kernels.batchnorm_forward(x, gamma, beta, training=True)[0],
    }
    if torch is not None:
        outs["torch"] = torch.nn.functional.batch_norm(
            torch.from_numpy(x), None, None, torch.from_numpy(gamma), torch.from_numpy(beta), training=True
        ).numpy()
    return {name: float(np.abs(out - ref).max()) for name, out in outs.items()}


def train_step_times(torch, normalization: str = "batchnorm", batch: int = 50, hidden=(256,) * 7,
                     input_dim: int = 40, classes: int = 10, rounds: int = 7) -> dict[str, float]:
    """Median ms of one training step of the demo's MLP (forward, backward, Adam update):
    ``FullyConnectedNet`` trained by the ``Solver`` (``Solver.step``) vs the same layers in
    PyTorch, float32, both at the machine's thread count, in blocks (``timing.time_blocks``)."""
    from ..classifiers import FullyConnectedNet
    from ..solver import Solver

    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, input_dim)).astype(np.float32)
    y = rng.integers(classes, size=batch)
    model = FullyConnectedNet(list(hidden), input_dim=input_dim, num_classes=classes, normalization=normalization,
                              dropout_keep_ratio=0.9, weight_scale=0.05, rng=0)
    solver = Solver(model, {"X_train": X, "y_train": y, "X_val": X, "y_val": y}, update_rule="adam",
                    optim_config={"learning_rate": 1e-3}, batch_size=batch, verbose=False)
    every = np.arange(batch)
    steps = {"normgrad": lambda: solver.step(every)}
    if torch is not None:
        layers, dims = [], [input_dim, *hidden]
        norm = {"batchnorm": torch.nn.BatchNorm1d, "layernorm": torch.nn.LayerNorm}.get(normalization)
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [torch.nn.Linear(a, b)] + ([norm(b)] if norm else []) + [torch.nn.ReLU(), torch.nn.Dropout(0.1)]
        net = torch.nn.Sequential(*layers, torch.nn.Linear(dims[-1], classes))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        tX, ty = torch.from_numpy(X), torch.from_numpy(y)

        def theirs():
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(tX), ty).backward()
            opt.step()

        steps["torch"] = theirs
    return time_blocks(steps, rounds=rounds, block_s=0.1, settle_s=0.3)


def machine() -> dict[str, str]:
    import numba

    torch = _torch()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "last-level cache": f"{bandwidth.last_level_cache_bytes() >> 20} MiB",
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "torch": torch.__version__ if torch else "not installed", "kernels": kernels.backend()}


def _kernel_rows(console, torch, bw: dict, quick: bool) -> list[dict]:
    """Every norm's kernels against torch's (``norms.time_case``), with a progress bar."""
    from rich.progress import Progress

    cases, dtypes = (QUICK_CASES, [np.float32]) if quick else (CASES, [np.float32, np.float64])
    rows = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("timing", total=len(cases) * len(dtypes))
        for dtype in dtypes:
            for case in cases:
                progress.update(task, description=f"timing {case.label} {np.dtype(dtype).name}")
                rows.append(time_case(case, dtype, torch, bw, rounds=3 if quick else 5))
                progress.advance(task)
    set_threads(os.cpu_count() or 1, torch)
    return rows


def run(console, quick: bool = False, json_path: Path | None = None) -> int:
    """The whole benchmark; ``json_path`` is checked before any timing (a ValueError if
    no file can be written there)."""
    from . import tables as report

    if json_path is not None:
        json_path = check_output_file(json_path, "--json")
    if kernels.backend() != "numba":
        console.print("[red]the fused kernels need Numba (and NORMGRAD_KERNELS not set to numpy)[/]")
        return 2
    steady = keep_freed_memory()
    torch = _torch()
    info = machine()
    console.print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    bw = bandwidth.measure(nbytes=64 << 20 if quick else None, repeats=2 if quick else 5)
    report.bandwidth_table(console, bw)
    rows = _kernel_rows(console, torch, bw, quick)
    report.kernel_table(console, rows)
    with console.status("timing masked batch norm"):
        masked = masked_rows(torch, quick)
    set_threads(os.cpu_count() or 1, torch)
    report.masked_table(console, masked)
    layouts = []
    if torch is not None:
        with console.status("timing channels_last batch and group norm"):
            layouts = channels_last_rows(torch, quick)
        set_threads(os.cpu_count() or 1, torch)
        report.channels_last_table(console, layouts)
    numpy_rows = {f"{'x'.join(map(str, s))} {np.dtype(d).name}": functional_backward_ms(s, d)
                  for s, d in ([((256, 64), np.float32)] if quick else
                               [((4096, 1024), np.float32), ((100, 500), np.float64)])}
    report.numpy_table(console, numpy_rows)
    compile_s = {} if quick else compile_cost()
    errors = large_mean_errors(torch, n=4096 if quick else 65536)
    for label, secs in compile_s.items():
        console.print(f"fused kernels, {label}: {secs:.2f}")
    console.print("float32 error at mean 1e4, std 1 (max |out - float64 reference|): "
                  + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    step_ms = {norm or "none": train_step_times(torch, norm, rounds=2 if quick else 7)
               for norm in ("batchnorm", "layernorm", None)}
    report.step_table(console, step_ms)
    models = {"models": [], "call_overhead": []}
    if torch is not None:
        from .models import model_rows

        with console.status("timing whole PyTorch models, eager and torch.compile, 1 and 2 threads"):
            models = model_rows(quick)
        report.models_table(console, models["models"])
        report.overhead_table(console, models["call_overhead"])
    sync = _sync_table(console, quick) if torch is not None else []
    if json_path is not None:
        result = {"machine": info, "steady_state_allocations": steady, "bandwidth_gbps": bw, "kernels": rows,
                  "numpy_backward_ms": numpy_rows, "compile_seconds": compile_s, "float32_large_mean_error": errors,
                  "train_step_ms": step_ms, "models": models["models"], "call_overhead": models["call_overhead"],
                  "sync_batchnorm": sync,
                  "masked_batchnorm": masked, "channels_last": layouts}
        atomic_write(json_path, lambda tmp: tmp.write_text(json.dumps(result, indent=2)))
        console.print(f"wrote {json_path}")
    return 0


def _sync_table(console, quick: bool) -> list[dict]:
    """SyncBatchNorm over 2 local processes vs plain batch norm on the same shard."""
    from . import tables as report
    from .distributed import sync_rows

    with console.status("timing SyncBatchNorm on 2 processes (gloo, 127.0.0.1)"):
        rows = sync_rows(2, quick)
    report.sync_table(console, rows)
    return rows
