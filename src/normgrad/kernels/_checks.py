"""The kernels' input checks: the messages of ``core.validate``, with a fast path for the
common call (C-contiguous float arrays of the right shape), which is most of the fixed
cost of a small kernel call."""

from __future__ import annotations

import numpy as np

from ..core import validate as v
from ..core.stats import NormStats

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def data(x, min_ndim: int, name: str = "x") -> np.ndarray:
    """A non-empty float32/64 C-contiguous array of at least ``min_ndim`` dimensions (a
    copy only if it is not contiguous). NaN/Inf are caught by ``finite_after``."""
    if type(x) is np.ndarray and x.dtype in FLOATS and x.flags.c_contiguous and x.ndim >= min_ndim and x.size:
        return x
    x = v.float_array(name, x)
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    return np.ascontiguousarray(x)


def upstream(dy, x: np.ndarray, name: str = "dy") -> np.ndarray:
    """dy (an upstream gradient called ``name``) of x's shape, as a C-contiguous array of x's dtype."""
    if not (type(dy) is np.ndarray and dy.dtype == x.dtype and dy.flags.c_contiguous and dy.shape == x.shape):
        dy = v.float_array(name, dy)
        if dy.shape != x.shape:
            raise ValueError(f"{name} must have x's shape {x.shape}, got {dy.shape}")
        dy = np.ascontiguousarray(dy, dtype=x.dtype)
    return dy


def vector(name: str, a, C: int) -> np.ndarray:
    """A finite (C,) parameter as float64 (integers promoted)."""
    if not (type(a) is np.ndarray and a.dtype in FLOATS and a.shape == (C,)):
        a = v.param_vector(name, a, ((C,),))
    elif not np.isfinite(a).all():
        v.finite(name, a)
    return a.astype(np.float64, copy=False)


def finite_after(results, *inputs) -> None:
    """NaN/Inf checks without an extra pass over the data.

    Every kernel reduces over all of its inputs, and a NaN or Inf anywhere makes
    those sums non-finite: only then are the inputs scanned, to say where.
    ``inputs`` are (name, array) pairs.
    """
    if all(np.isfinite(r).all() for r in results):
        return
    for name, a in inputs:
        v.finite(name, a)
    raise v.NonFiniteError("the statistics overflow float64: rescale the input")


def output(out, like: np.ndarray, name: str = "out") -> np.ndarray:
    if out is None:
        return np.empty_like(like)
    if not isinstance(out, np.ndarray) or out.shape != like.shape or out.dtype != like.dtype:
        raise ValueError(f"{name} must be an array of shape {like.shape} and dtype {like.dtype}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writable")
    return out


def stats(value, shape: tuple[int, ...]) -> NormStats:
    """The backward's NormStats, each field float64 of ``shape``."""
    if not isinstance(value, tuple) or len(value) != 3:
        raise TypeError(f"stats must be the NormStats (mean, var, invstd) the forward returned, got "
                        f"{type(value).__name__}")
    fields = []
    for name, a in zip(NormStats._fields, value):
        if not (type(a) is np.ndarray and a.dtype == np.float64 and a.shape == shape and a.flags.c_contiguous
                and np.isfinite(a).all()):
            a = np.ascontiguousarray(v.param_vector(name, a, (shape,)), dtype=np.float64)
        fields.append(a)
    return NormStats(*fields)
