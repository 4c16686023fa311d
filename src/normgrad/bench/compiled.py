"""normgrad.torch inside whole PyTorch models, eager and under ``torch.compile``.

Two small models (an MLP 256-512-512-10 with two BatchNorm1d; two 3x3 convs of 32
channels, each with BatchNorm2d, pooling, a linear head), each built twice with the same weights: with ``torch.nn`` batch
norm and with ``normgrad.torch`` batch norm (``convert_batchnorm``). Each is timed
eager and compiled (``torch.compile``, inductor), one forward + backward in
training mode, at the machine's thread count, in interleaved blocks
(``timing.time_blocks``). The first compiled call's time (compilation included) is
reported too.
"""

from __future__ import annotations

import time

from .timing import time_blocks


def _models(torch):
    """name -> (torch.nn model, input shape)."""
    mlp = torch.nn.Sequential(
        torch.nn.Linear(256, 512), torch.nn.BatchNorm1d(512), torch.nn.ReLU(),
        torch.nn.Linear(512, 512), torch.nn.BatchNorm1d(512), torch.nn.ReLU(),
        torch.nn.Linear(512, 10))
    conv = torch.nn.Sequential(
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10))
    return {"MLP, batch 256": (mlp, (256, 256)),
            "conv net, 32x16x32x32": (conv, (32, 16, 32, 32))}


def compiled_rows(torch, quick: bool = False) -> list[dict]:
    import copy

    from ..torch import convert_batchnorm

    rows = []
    for label, (theirs, shape) in _models(torch).items():
        torch.manual_seed(0)
        x = torch.randn(shape)
        ours = convert_batchnorm(copy.deepcopy(theirs))
        variants, first_call_s = {}, {}
        for side, model in (("torch.nn", theirs), ("normgrad", ours)):
            compiled = torch.compile(model)
            start = time.perf_counter()
            compiled(x).sum().backward()
            first_call_s[side] = time.perf_counter() - start
            variants[f"{side} eager"] = lambda m=model: m(x).sum().backward()
            variants[f"{side} compiled"] = lambda m=compiled: m(x).sum().backward()
        ms = time_blocks(variants, rounds=2 if quick else 5, settle_s=0.05 if quick else 0.15)
        rows.append({"model": label, "ms": ms, "first_compiled_call_s": first_call_s})
    return rows
