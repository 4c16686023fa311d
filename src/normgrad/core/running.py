"""The running-statistics rule of batch norm, once, in its two conventions.

Every convention blends the batch's statistics into the running ones:

    running = (1 - w) * running + w * batch

and differs in the weight w of the new batch and in which batch variance is
blended:

- ``CS231N`` (``normgrad.functional``, the CS231n classifiers): w = 1 - momentum
  (momentum 0.9 keeps 90% of the old value), the biased batch variance (the one
  the forward pass normalized with).
- ``TORCH`` (``normgrad.nn``, ``normgrad.torch``): w = momentum (default 0.1), or
  1 / num_batches_tracked when momentum is None (a cumulative average); the
  unbiased batch variance, var * count / (count - 1).

``blend`` works on NumPy arrays and torch tensors alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Convention:
    """How one family of APIs reads ``momentum`` and which variance it averages."""

    name: str
    momentum_keeps_old: bool  # CS231n: momentum is the weight of the old value
    unbiased: bool  # average var * count / (count - 1)

    def weight(self, momentum: float | None, num_batches_tracked=1) -> float:
        """w, the weight of the new batch. ``num_batches_tracked`` (an int, or a 0-d array
        or tensor, counting this batch) is read only when momentum is None."""
        if momentum is None:
            return 1.0 / float(num_batches_tracked)
        return 1.0 - momentum if self.momentum_keeps_old else momentum

    def batch_var(self, var, count: int, centered: bool = True):
        """The batch variance this convention averages, from the biased ``var`` of ``count``
        values; an uncentred norm's mean square is averaged as it is (no Bessel correction)."""
        return var * (count / (count - 1)) if self.unbiased and centered else var


CS231N = Convention("cs231n", momentum_keeps_old=True, unbiased=False)
TORCH = Convention("torch", momentum_keeps_old=False, unbiased=True)


def blend(running, batch, w: float):
    """(1 - w) * running + w * batch, as a new array (or tensor)."""
    return (1.0 - w) * running + w * batch


def batch_moments(convention: Convention, mean, var, count, across: str, centered: bool = True):
    """What a running average takes in from one batch, per channel: the batch ``mean`` and
    the convention's variance of the biased ``var`` (unbiased from ``count`` values where
    centred; ``count`` a number, or one per statistic, broadcastable against var); per-sample
    statistics ((N, C)) averaged over the batch (instance norm's rule in torch). NumPy arrays
    and torch tensors alike."""
    var = convention.batch_var(var, count, centered)
    if across == "batch":
        return mean, var
    return mean.mean(0), var.mean(0)


def blend_in(convention: Convention, running_mean, running_var, mean, var, momentum: float | None,
             num_batches_tracked=1):
    """New (running_mean, running_var) with one batch's ``batch_moments`` blended in."""
    w = convention.weight(momentum, num_batches_tracked)
    return blend(running_mean, mean, w), blend(running_var, var, w)


def updated(convention: Convention, running_mean, running_var, mean, var, count: int,
            momentum: float | None, num_batches_tracked: int = 1, centered: bool = True):
    """New (running_mean, running_var) after one batch of ``count`` values per channel
    with mean ``mean`` and biased variance ``var`` (uncentred: 0 and the mean square)."""
    return blend_in(convention, running_mean, running_var,
                    *batch_moments(convention, mean, var, count, "batch", centered), momentum, num_batches_tracked)


def valid_counts(spec, shape: tuple[int, ...], G=None, weights=None):
    """Values behind each statistic of ``spec`` for x of ``shape``: a number (the same for
    all), or with a mask's ``weights`` ((N, L), ``NormSpec.mask_weights``) the valid
    positions: one number across the batch, (N, 1) per sample."""
    view = spec.view(shape, G)
    if weights is None:
        return spec.count(view)
    if spec.across == "batch":
        return float(weights.sum(dtype=np.float64))
    return view[2] * weights.sum(axis=1, dtype=np.float64).reshape(-1, 1)


def check_count(count, centered: bool, what: str) -> None:
    """A centred batch variance of ``count`` values per statistic (a number, or an array of
    them) needs count >= 2 (the unbiased variance divides by count - 1): refused before
    any state changes."""
    if centered:
        from .validate import enough_values

        enough_values(count if isinstance(count, (int, float)) else int(np.min(count)), what)


def read_cs231n(param: dict, C: int, dtype, name: str = "bn_param") -> tuple[np.ndarray, np.ndarray]:
    """(running_mean, running_var) of a CS231n ``bn_param``: zeros where missing, as the
    course's starter code; (C,) finite, variance >= 0; integer arrays promoted to ``dtype``."""
    from . import validate as v

    pair = []
    for key in ("running_mean", "running_var"):
        value = param.get(key)
        pair.append(np.zeros(C, dtype=dtype) if value is None
                    else v.param_vector(f"{name}[{key!r}]", value, ((C,),), dtype))
    if (pair[1] < 0).any():
        raise ValueError(f"{name}['running_var'] must be >= 0 everywhere")
    return pair[0], pair[1]


def write_cs231n(param: dict, old: tuple, mean, var, momentum: float, dtype, name: str = "bn_param") -> None:
    """Blend one batch's ``batch_moments`` into ``param``'s running statistics (CS231N
    rule), as new arrays in the wider of each old statistic's and the data's dtypes;
    refused (param unchanged) where a value would overflow that dtype."""
    new = blend_in(CS231N, old[0], old[1], mean, var, momentum)
    kept = [fits(f"{name}[{key!r}]", a, np.result_type(o, dtype))
            for key, a, o in zip(("running_mean", "running_var"), new, old)]
    param["running_mean"], param["running_var"] = kept


def fits(name: str, new: np.ndarray, dtype) -> np.ndarray:
    """``new`` cast to ``dtype``, or a ValueError naming ``name`` if it would overflow."""
    largest = float(np.abs(new).max()) if new.size else 0.0
    if largest > float(np.finfo(dtype).max):
        raise ValueError(f"{name} would overflow {np.dtype(dtype).name} (largest {largest:.3g}); "
                         "keep the running statistics in float64")
    return np.asarray(new).astype(dtype)
