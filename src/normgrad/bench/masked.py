"""Masked batch norm: normgrad's fused masked kernels against the same tensor unmasked and
against the best pure-PyTorch masked batch norm (masked mean and variance in torch
operations, autograd for the backward), forward + backward, at 1 and 2 threads, timed
side by side (``timing.time_blocks``)."""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..core.specs import BATCH
from .norms import set_threads
from .timing import time_blocks

SHAPE, QUICK_SHAPE, PADDING = (64, 256, 512), (16, 64, 128), 0.3


def padded_batch(shape, padding: float, dtype=np.float32, seed: int = 0):
    """x (N, C, L), dy, gamma, beta and a mask (N, L) whose sequences end at random lengths,
    ``padding`` of the positions padding on average."""
    rng = np.random.default_rng(seed)
    N, C, L = shape
    lengths = rng.integers(int(L * (1 - 2 * padding)), L + 1, N)
    mask = np.arange(L)[None, :] < lengths[:, None]
    x = (rng.normal(3.0, 2.0, shape) * mask[:, None, :]).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, dy, rng.normal(1, 0.1, C), rng.normal(0, 0.1, C), mask


def torch_masked_batch_norm(x, gamma, beta, w):
    """Masked batch norm in torch operations: x (N, C, L); gamma, beta (C,); w (N, 1, L),
    1 valid, 0 padding. Statistics of the valid positions (two passes), every position
    normalized; autograd differentiates it."""
    n = w.sum()
    mean = (x * w).sum(dim=(0, 2), keepdim=True) / n
    var = ((x - mean).square() * w).sum(dim=(0, 2), keepdim=True) / n
    return (x - mean) * (var + 1e-5).rsqrt() * gamma[:, None] + beta[:, None]


def torch_masked_step(torch, x, dy, gamma, beta, mask):
    """One forward + backward of ``torch_masked_batch_norm`` on NumPy data."""
    xt = torch.from_numpy(x).requires_grad_()
    gt, bt = (torch.tensor(a, dtype=xt.dtype, requires_grad=True) for a in (gamma, beta))
    w, dyt = torch.from_numpy(mask)[:, None, :].to(xt.dtype), torch.from_numpy(dy)

    def step():
        xt.grad = gt.grad = bt.grad = None
        torch_masked_batch_norm(xt, gt, bt, w).backward(dyt)

    return step


def masked_rows(torch, quick: bool = False) -> list[dict]:
    """Medians (ms) per thread count: normgrad masked, normgrad unmasked on the same tensor,
    torch ops masked; and the ratios of normgrad masked to the other two."""
    x, dy, gamma, beta, mask = padded_batch(QUICK_SHAPE if quick else SHAPE, PADDING)

    def ours(m):
        def step():
            _, stats = kernels.norm_forward(BATCH, x, gamma, beta, mask=m)
            kernels.norm_backward(BATCH, dy, x, gamma, stats, mask=m)
        return step

    fns = {"normgrad masked": ours(mask), "normgrad unmasked": ours(None)}
    if torch is not None:
        fns["torch masked"] = torch_masked_step(torch, x, dy, gamma, beta, mask)
    rows = []
    for threads in (1, 2):
        set_threads(threads, torch)
        ms = time_blocks(fns, rounds=3 if quick else 5)
        row = {"shape": list(x.shape), "padding": round(1 - float(mask.mean()), 3), "threads": threads, "ms": ms,
               "vs_unmasked": ms["normgrad masked"] / ms["normgrad unmasked"]}
        if "torch masked" in ms:
            row["vs_torch_masked"] = ms["normgrad masked"] / ms["torch masked"]
        rows.append(row)
    return rows
