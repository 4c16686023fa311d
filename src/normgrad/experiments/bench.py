"""``normgrad bench``: batch norm forward + backward, every implementation side by side.

Implementations, timed interleaved in one run (each repeat calls each of them once,
so drifts in machine load hit all alike), after a warm-up, reporting medians:

- numpy staged / numpy closed: ``normgrad.functional`` (readable NumPy, 1 thread)
- fused 1t / 2t: ``normgrad.kernels`` (Numba) at 1 and 2 threads
- torch 1t / 2t: ``F.batch_norm`` + autograd, when PyTorch is installed
- copy 1t / 2t: a memory copy of x, the bandwidth reference

Then, with PyTorch installed: SyncBatchNorm on 2 local processes against plain
batch norm on the same shard, and the all-reduce calls per step (``bench_sync``).

Effective bandwidth counts the five arrays a forward + backward must move (read x,
write y; read x and dy, write dx). "of copy" is that bandwidth over the copy's
(two arrays) at the same thread count.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import functional as F
from .. import kernels
from .._io import atomic_write
from .gradchecks import large_mean_case
from .timing import time_interleaved

SHAPES = [(256, 1024), (4096, 1024), (65536, 256), (64, 64, 32, 32)]
QUICK_SHAPES = [(256, 1024), (8, 16, 8, 8)]


@dataclass
class Row:
    shape: tuple[int, ...]
    dtype: str
    impl: str
    threads: int
    ms: float
    gbps: float
    vs_torch: float | None = None  # time / torch's time at the same thread count
    of_copy: float | None = None  # effective bandwidth / copy bandwidth, same threads


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _set_threads(n: int, torch) -> None:
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if torch is not None:
        torch.set_num_threads(n)


def _parallel_copy():
    from numba import njit, prange

    @njit(parallel=True, cache=False)
    def copy(src, dst):
        a, b = src.reshape(-1), dst.reshape(-1)
        n = a.size
        chunks = 64
        for k in prange(chunks):
            for i in range(k * n // chunks, (k + 1) * n // chunks):
                b[i] = a[i]

    return copy


def _implementations(x: np.ndarray, torch) -> dict[str, tuple[int, callable]]:
    """name -> (threads, one forward + backward)."""
    rng = np.random.default_rng(0)
    C = x.shape[1]
    gamma, beta = rng.normal(1, 0.1, C).astype(x.dtype), rng.normal(0, 0.1, C).astype(x.dtype)
    dy = rng.standard_normal(x.shape).astype(x.dtype)
    y, dx = np.empty_like(x), np.empty_like(x)
    impls: dict[str, tuple[int, callable]] = {}
    if x.ndim == 2:
        def staged():
            F.batchnorm_backward(dy, F.batchnorm_forward(x, gamma, beta, {"mode": "train"})[1])

        def closed():
            F.batchnorm_backward_alt(dy, F.batchnorm_forward(x, gamma, beta, {"mode": "train"})[1])

        impls["numpy staged"] = (1, staged)
    else:
        def closed():
            F.spatial_batchnorm_backward(dy, F.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})[1])
    impls["numpy closed"] = (1, closed)

    def fused():
        _, stats = kernels.batchnorm_forward(x, gamma, beta, training=True, out=y)
        kernels.batchnorm_backward(dy, x, gamma, stats, out=dx)

    impls["fused 1t"] = (1, fused)
    impls["fused 2t"] = (2, fused)
    if torch is not None:
        xt = torch.from_numpy(x).requires_grad_(True)
        gt, bt = torch.from_numpy(gamma).requires_grad_(True), torch.from_numpy(beta).requires_grad_(True)
        dyt = torch.from_numpy(dy)

        def torch_bn():
            xt.grad = gt.grad = bt.grad = None
            torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True).backward(dyt)

        impls["torch 1t"] = (1, torch_bn)
        impls["torch 2t"] = (2, torch_bn)
    copy2 = _parallel_copy()
    impls["copy 1t"] = (1, lambda: np.copyto(y, x))
    impls["copy 2t"] = (2, lambda: copy2(x, y))
    return impls


def time_shape(shape, dtype, torch, budget_s: float = 0.6, max_repeats: int = 15) -> list[Row]:
    """Median time of each implementation for one shape and dtype, interleaved."""
    x = np.random.default_rng(1).normal(3.0, 2.0, shape).astype(dtype)
    impls = _implementations(x, torch)
    warm = {}
    for name, (threads, fn) in impls.items():
        _set_threads(threads, torch)
        fn()
        t = time.perf_counter()
        fn()
        warm[name] = time.perf_counter() - t
    repeats = int(np.clip(budget_s / max(warm.values()), 3, max_repeats))
    times: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(repeats):
        for name, (threads, fn) in impls.items():
            _set_threads(threads, torch)
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    moved = 5 * x.nbytes
    rows = []
    med = {name: float(np.median(ts)) for name, ts in times.items()}
    for name, (threads, _) in impls.items():
        ms = med[name] * 1e3
        rows.append(Row(tuple(shape), np.dtype(dtype).name, name, threads, ms, moved / med[name] / 1e9))
    for row in rows:
        if row.impl.startswith("copy"):
            row.gbps = 2 * x.nbytes / med[row.impl] / 1e9
            continue
        torch_name = f"torch {row.threads}t"
        if torch_name in med and not row.impl.startswith("torch"):
            row.vs_torch = med[row.impl] / med[torch_name]
        copy_gbps = 2 * x.nbytes / med[f"copy {row.threads}t"] / 1e9
        row.of_copy = row.gbps / copy_gbps
    return rows


def compile_cost() -> dict[str, float]:
    """First-call seconds of the fused kernels (both dtypes) in a fresh process:
    with an empty Numba cache (compiling) and then with that cache filled."""
    code = (
        "import time, numpy as np\n"
        "t = time.perf_counter()\n"
        "from normgrad import kernels\n"
        "for dt in (np.float32, np.float64):\n"
        "    x = np.ones((8, 4), dt); x[0] = 2\n"
        "    y, stats = kernels.batchnorm_forward(x, np.ones(4), np.zeros(4), training=True)\n"
        "    kernels.batchnorm_backward(x, x, np.ones(4), stats)\n"
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
    """Max |out - float64 reference| for float32 data with mean 1e4, std 1."""
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
                     input_dim: int = 40, classes: int = 10, repeats: int = 200) -> dict[str, float]:
    """Median ms of one training step of the demo's MLP (forward, backward, Adam update):
    ``FullyConnectedNet`` + ``Solver``'s update vs the same layers in PyTorch, float32,
    both at the machine's thread count. Interleaved, after a warm-up."""
    from .. import optim
    from ..classifiers import FullyConnectedNet

    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, input_dim)).astype(np.float32)
    y = rng.integers(classes, size=batch)
    model = FullyConnectedNet(list(hidden), input_dim=input_dim, num_classes=classes, normalization=normalization,
                              dropout_keep_ratio=0.9, weight_scale=0.05, rng=0)
    configs = {k: {"learning_rate": 1e-3} for k in model.params}

    def ours():
        _, grads = model.loss(X, y)
        for k, w in model.params.items():
            model.params[k], configs[k] = optim.adam(w, grads[k], configs[k])

    steps = {"normgrad": ours}
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
    return time_interleaved(steps, repeats, warmup=10)


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
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__,
            "torch": torch.__version__ if torch else "not installed", "kernels": kernels.backend()}


def run(console, quick: bool = False, json_path: Path | None = None) -> int:
    from rich.table import Table

    if kernels.backend() != "numba":
        console.print("[red]the fused kernels need Numba (and NORMGRAD_KERNELS not set to numpy)[/]")
        return 2
    torch = _torch()
    shapes, dtypes = (QUICK_SHAPES, [np.float32]) if quick else (SHAPES, [np.float32, np.float64])
    info = machine()
    console.print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    rows: list[Row] = []
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("timing", total=len(shapes) * len(dtypes))
        for dtype in dtypes:
            for shape in shapes:
                progress.update(task, description=f"timing {shape} {np.dtype(dtype).name}")
                rows += time_shape(shape, dtype, torch, budget_s=0.15 if quick else 0.6)
                progress.advance(task)
    _set_threads(os.cpu_count() or 1, torch)

    table = Table(title="batch norm forward + backward (median ms; GB/s counts 5 arrays)")
    for col in ("shape", "dtype", "implementation", "ms", "GB/s", "vs torch", "of copy"):
        table.add_column(col, justify="left" if col in ("shape", "dtype", "implementation") else "right")
    for r in rows:
        table.add_row(str(r.shape), r.dtype, r.impl, f"{r.ms:.3f}", f"{r.gbps:.1f}",
                      "" if r.vs_torch is None else f"{r.vs_torch:.2f}x",
                      "" if r.of_copy is None else f"{r.of_copy:.0%}")
    console.print(table)

    compile_s = {} if quick else compile_cost()
    errors = large_mean_errors(torch, n=4096 if quick else 65536)
    for label, secs in compile_s.items():
        console.print(f"fused kernels, {label}: {secs:.2f}")
    console.print("float32 error at mean 1e4, std 1 (max |out - float64 reference|): "
                  + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    step_ms = {norm or "none": train_step_times(torch, norm, repeats=20 if quick else 200)
               for norm in ("batchnorm", "layernorm", None)}
    table = Table(title="one training step of the demo MLP (8 layers, 256 wide, batch 50, float32, Adam; median ms)")
    for col in ("normalization", "normgrad", "torch", "normgrad / torch"):
        table.add_column(col, justify="left" if col == "normalization" else "right")
    for norm, ms in step_ms.items():
        ratio = f"{ms['normgrad'] / ms['torch']:.2f}x" if "torch" in ms else ""
        table.add_row(norm, f"{ms['normgrad']:.3f}", f"{ms.get('torch', float('nan')):.3f}", ratio)
    console.print(table)
    sync = _sync_table(console, quick) if torch is not None else []
    if json_path is not None:
        report = {"machine": info, "results": [asdict(r) for r in rows], "compile_seconds": compile_s,
                  "float32_large_mean_error": errors, "train_step_ms": step_ms, "sync_batchnorm": sync}
        atomic_write(json_path, lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
        console.print(f"wrote {json_path}")
    return 0


def _sync_table(console, quick: bool) -> list[dict]:
    """SyncBatchNorm over 2 local processes vs plain batch norm on the same shard."""
    from .bench_sync import sync_rows

    with console.status("timing SyncBatchNorm on 2 processes (gloo, 127.0.0.1)"):
        rows = sync_rows(2, quick)
    print_sync_table(console, rows)
    return rows


def print_sync_table(console, rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="SyncBatchNorm on 2 processes x 1 thread, each with half the batch; float32 forward + "
                        "backward, median ms. sync, plain: on rank 0's half; 2 AR: the two bare all-reduces; "
                        "ratio: sync / plain; 1p: the whole batch in one process, 2 threads (normgrad, torch)")
    for col in ("batch", "sync", "plain", "ratio", "2 AR", "AR/step", "1p ng", "1p torch"):
        table.add_column(col, justify="left" if col == "batch" else "right")
    for r in rows:
        table.add_row("x".join(map(str, r["shape"])), f"{r['sync_ms']:.2f}", f"{r['plain_ms']:.2f}",
                      f"{r['sync_ms'] / r['plain_ms']:.2f}x", f"{r['allreduce_ms']:.2f}", str(r["allreduce_calls"]),
                      f"{r['whole_batch_normgrad_ms']:.2f}", f"{r['whole_batch_torch_ms']:.2f}")
    console.print(table)
