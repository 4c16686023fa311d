"""channels_last inputs: normgrad.torch's batch norm and group norm against torch.nn's on
the same channels-last tensor, forward + backward, at 1 and 2 threads, side by side."""

from __future__ import annotations

from .norms import set_threads
from .timing import time_blocks

CASES = {"batch norm 32x64x32x32": ("BatchNorm2d", (64,), (32, 64, 32, 32)),
         "group norm 16x64x28x28 G=8": ("GroupNorm", (8, 64), (16, 64, 28, 28))}
QUICK_CASES = {"batch norm 8x16x8x8": ("BatchNorm2d", (16,), (8, 16, 8, 8)),
               "group norm 8x16x8x8 G=4": ("GroupNorm", (4, 16), (8, 16, 8, 8))}


def _step(torch, module, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    dy = torch.randn(shape, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=torch.channels_last)

    def step():
        x.grad = None
        module(x).backward(dy)

    return step


def channels_last_rows(torch, quick: bool = False) -> list[dict]:
    """Medians (ms) of normgrad's and torch's module per case and thread count, and their ratio."""
    import normgrad.torch as nt

    rows = []
    for label, (name, args, shape) in (QUICK_CASES if quick else CASES).items():
        fns = {"normgrad": _step(torch, getattr(nt, name)(*args), shape),
               "torch": _step(torch, getattr(torch.nn, name)(*args), shape)}
        for threads in (1, 2):
            set_threads(threads, torch)
            ms = time_blocks(fns, rounds=3 if quick else 5)
            rows.append({"case": label, "threads": threads, "ms": ms, "vs_torch": ms["normgrad"] / ms["torch"]})
    return rows
