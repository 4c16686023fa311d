"""The batch-norm variants as policies on the one pipeline, written once for every
front end (CS231n functions, ``normgrad.nn``, ``normgrad.torch``).

- Batch renormalization (Ioffe, 2017): a *correction* between the statistics and
  the affine. With the batch's mean m_B and std s_B = sqrt(var_B + eps) and the
  running std s = sqrt(running_var + eps):
  r = clip(s_B / s, 1/rmax, rmax), d = clip((m_B - running_mean) / s, -dmax, dmax),
  out = gamma * (xhat * r + d) + beta: batch norm with gamma * r as its scale and
  gamma * d + beta as its shift; r and d are constants in the backward, so
  dgamma = r * sum(dout * xhat) + d * sum(dout).
- Ghost batch norm (Hoffer et al., 2017): a *reduction per chunk*: consecutive
  chunks of ``virtual_batch_size`` samples, each normalized with its own
  statistics (the last may be shorter), the running statistics updated once per
  chunk in order.

The arithmetic uses only operators and ``.clip``, so the same function serves NumPy
arrays and torch tensors. The argument checks live here too: every front end calls
them before it changes any state.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

from . import validate as v


def renorm_limits(rmax, dmax) -> tuple[float, float]:
    """(rmax, dmax) as floats: rmax finite >= 1, dmax finite >= 0."""
    rmax, dmax = v.real_value("rmax", rmax), v.real_value("dmax", dmax)
    if not 1.0 <= rmax < np.inf:
        raise ValueError(f"rmax must be a finite number >= 1, got {rmax}")
    if not 0.0 <= dmax < np.inf:
        raise ValueError(f"dmax must be a finite number >= 0, got {dmax}")
    return rmax, dmax


def renorm_correction(mean, var, running_mean, running_var, eps: float, rmax: float, dmax: float):
    """(r, d) of batch renormalization from the batch's (mean, biased var) and the running
    statistics before this batch; all (C,), NumPy arrays or torch tensors alike."""
    s = (running_var + eps) ** 0.5
    r = (((var + eps) ** 0.5) / s).clip(1.0 / rmax, rmax)
    d = ((mean - running_mean) / s).clip(-dmax, dmax)
    return r, d


def renorm_affine(gamma, beta, r, d):
    """(scale, shift) of the corrected affine: gamma * r and gamma * d + beta."""
    return gamma * r, gamma * d + beta


def renorm_param_grads(dgamma_xhat, dbeta, r, d):
    """dgamma = r * sum(dout * xhat) + d * sum(dout), from batch norm's (dgamma, dbeta)."""
    return r * dgamma_xhat + d * dbeta


def virtual_batch_size_value(value) -> int:
    """An integer >= 2 (Python or NumPy integer; bool refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"virtual_batch_size must be an integer, got {type(value).__name__}")
    if value < 2:
        raise ValueError(f"virtual_batch_size must be >= 2, got {value}")
    return int(value)


def ghost_chunks(shape: tuple[int, ...], virtual_batch_size: int) -> list[tuple[int, int]]:
    """[lo, hi) samples of each chunk of a batch of ``shape`` (N, C, *spatial). Refused
    (before any state changes) when a chunk would hold one value per channel."""
    N = shape[0]
    B = virtual_batch_size
    positions = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    if N % B == 1 and positions == 1:
        raise ValueError(f"virtual_batch_size {B} splits the batch of {N} rows into a last chunk of 1 row: "
                         "batch statistics of a single value are undefined")
    return [(lo, min(lo + B, N)) for lo in range(0, N, B)]
