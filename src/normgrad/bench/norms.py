"""Every norm's fused kernels against PyTorch, forward + backward, timed side by side.

For each case (a norm and a shape) and dtype, at 1 and 2 threads, in one run: blocks
of consecutive calls of each implementation, interleaved round by round, each after
the machine has settled (``timing.time_blocks``), reporting medians:

- normgrad: ``kernels.norm_forward`` + ``kernels.norm_backward`` (what the modules call)
- torch: ``F.batch_norm`` / ``F.layer_norm`` / ``F.group_norm`` / ... + autograd backward

"of roofline" is the time the bytes the kernels must move would take at the measured
copy bandwidth (``bandwidth``) over the time they took. Statistics across the batch
(batch norm) need the whole batch before any output: the forward reads x twice and
writes y, the backward reads x and dy twice (sums, then dx) and writes dx: 8 arrays.
Statistics per sample (layer, group, instance, RMS norm) work on rows that fit in
cache: read x, write y; read x and dy, write dx: 5 arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..core.specs import SPECS
from .timing import time_blocks


@dataclass(frozen=True)
class Case:
    norm: str  # a key of core.specs.SPECS
    shape: tuple[int, ...]
    groups: int | None = None

    @property
    def label(self) -> str:
        return f"{self.norm} {'x'.join(map(str, self.shape))}" + (f" G={self.groups}" if self.groups else "")

    @property
    def arrays_moved(self) -> int:
        return 8 if SPECS[self.norm].across == "batch" else 5

    @property
    def channels(self) -> int:
        return self.shape[-1] if SPECS[self.norm].features_last else self.shape[1]


CASES = [Case("batch", (256, 1024)), Case("batch", (4096, 1024)), Case("batch", (65536, 256)),
         Case("batch", (64, 64, 32, 32)),
         Case("layer", (256, 1024)), Case("layer", (4096, 1024)), Case("layer", (65536, 256)),
         Case("group", (32, 256, 14, 14), 32), Case("instance", (32, 64, 28, 28)), Case("rms", (4096, 1024))]
QUICK_CASES = [Case("batch", (256, 1024)), Case("layer", (256, 1024)), Case("group", (8, 16, 8, 8), 4),
               Case("instance", (8, 16, 8, 8)), Case("rms", (256, 1024))]


def _torch_step(case: Case, torch, x, gamma, beta, dy):
    """One forward + backward of PyTorch's own operation for ``case``."""
    F = torch.nn.functional
    xt, gt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, gamma, beta))
    dyt = torch.from_numpy(dy)
    ops = {"batch": lambda: F.batch_norm(xt, None, None, gt, bt, training=True),
           "layer": lambda: F.layer_norm(xt, (case.shape[-1],), gt, bt),
           "group": lambda: F.group_norm(xt, case.groups, gt, bt),
           "instance": lambda: F.instance_norm(xt, weight=gt, bias=bt),
           "rms": lambda: F.rms_norm(xt, (case.shape[-1],), gt)}

    def step():
        xt.grad = gt.grad = bt.grad = None
        ops[case.norm]().backward(dyt)

    return step


def implementations(case: Case, dtype, torch) -> dict:
    """name -> (threads, one forward + backward)."""
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, case.shape).astype(dtype)
    gamma, beta = rng.normal(1, 0.1, case.channels).astype(dtype), rng.normal(0, 0.1, case.channels).astype(dtype)
    dy = rng.standard_normal(case.shape).astype(dtype)
    spec = SPECS[case.norm]

    def ours():
        _, stats = kernels.norm_forward(spec, x, gamma, beta, G=case.groups)
        kernels.norm_backward(spec, dy, x, gamma, stats, G=case.groups)

    impls = {"normgrad 1t": (1, ours), "normgrad 2t": (2, ours)}
    if torch is not None:
        theirs = _torch_step(case, torch, x, gamma, beta, dy)
        impls.update({"torch 1t": (1, theirs), "torch 2t": (2, theirs)})
    return impls


def set_threads(n: int, torch) -> None:
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if torch is not None:
        torch.set_num_threads(n)


def time_case(case: Case, dtype, torch, bandwidth: dict, rounds: int = 5) -> dict:
    """Medians (ms) of every implementation, ratios to torch and roofline fractions."""
    impls = implementations(case, dtype, torch)
    fns = {name: fn for name, (_, fn) in impls.items()}
    before = {name: (lambda t=threads: set_threads(t, torch)) for name, (threads, _) in impls.items()}
    ms = time_blocks(fns, rounds=rounds, before=before)
    nbytes = case.arrays_moved * int(np.prod(case.shape)) * np.dtype(dtype).itemsize
    row = {"case": case.label, "norm": case.norm, "shape": list(case.shape), "dtype": np.dtype(dtype).name,
           "bytes_moved": nbytes, "ms": ms}
    for threads in (1, 2):
        ours = ms[f"normgrad {threads}t"]
        row[f"of_roofline_{threads}t"] = nbytes / (bandwidth[threads]["copy"] * 1e9) / (ours / 1e3)
        if f"torch {threads}t" in ms:
            row[f"vs_torch_{threads}t"] = ours / ms[f"torch {threads}t"]
    return row
