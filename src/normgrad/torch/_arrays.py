"""Tensors as the kernels take them: NumPy views without copies, x's memory format and the
permutations that read a channels-last tensor where it lies, parameters as float64
vectors. Shared by ``ops`` and ``_double_backward``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor


def memory_format(x: Tensor) -> torch.memory_format:
    """x's memory format as torch's norms keep it: channels_last (3d) for a 4-D (5-D) input
    laid out with channels innermost, else contiguous."""
    if x.dim() in (4, 5) and not x.is_contiguous():
        cl = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        if x.is_contiguous(memory_format=cl):
            return cl
    return torch.contiguous_format


def channels_innermost(spec, x: Tensor, fmt: torch.memory_format | None = None):
    """(spec, permutation) to run batch statistics of a channels-last x on its memory as it
    is: x viewed as (N, *spatial, C) by a features-last spec; None when x is not such.
    ``fmt``: x's ``memory_format`` when the caller has it."""
    if spec.across != "batch" or spec.features_last or (fmt or memory_format(x)) == torch.contiguous_format:
        return None
    order = (0, *range(2, x.dim()), 1)
    return replace(spec, features_last=True), order


def samples_channels_last(spec, x: Tensor, fmt: torch.memory_format):
    """The permutation that views a channels-last x as (N, *spatial, C) without a copy, for
    a centred per-sample norm (group, instance) the channels-last kernels take; else None."""
    if spec.across != "sample" or spec.features_last or not spec.centered or fmt == torch.contiguous_format:
        return None
    return (0, *range(2, x.dim()), 1)


def as_numpy(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def float64_vector(t: Tensor | None, C: int, default: float) -> np.ndarray:
    """A (C,) parameter or statistic as a new float64 array (never sharing t's memory)."""
    if t is None:
        return np.full(C, default)
    t = t.detach()
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        return t.numpy().astype(np.float64)
    return t.to("cpu", torch.float64).numpy()


def numpy_mask(mask: Tensor | None):
    return None if mask is None else mask.detach().cpu().numpy()


def wrapped(t: Tensor) -> bool:
    """A tensor of a torch.func transform (vmap's batched, grad's tracking) rather than plain data."""
    functorch = torch._C._functorch
    return bool(functorch.is_batchedtensor(t) or functorch.is_legacy_batchedtensor(t) or functorch.is_gradtrackingtensor(t))
