"""Instance and RMS normalization, CS231n-style.

Instance norm normalizes each example's channel by its own mean and variance over
the spatial positions (group norm with one channel per group, ``core.specs.INSTANCE``),
then scales and shifts it per channel; it behaves the same in training and at test
time. RMS norm divides each row by its root mean square, mean(x**2) over the last
axis, and scales per feature: no centring, no shift (``core.specs.RMS``).
"""

from __future__ import annotations

import numpy as np

from ..core import validate as v
from ..core.specs import INSTANCE, RMS
from ._norm import check_cache, norm_backward, normalize
from .generic import norm_forward


def instancenorm_forward(x, gamma, beta, in_param, *, mask=None):
    """Instance normalization: statistics per example and channel over (*spatial).

    Inputs:
    - x: data of shape (N, C, *spatial), at least one spatial axis
    - gamma, beta: scale and shift per channel, each of shape (C,)
    - in_param: dict with optional key eps (default 1e-5)
    - mask (keyword): None, or bool of shape (N, *spatial), True = a valid position
    Returns a tuple of:
    - out: output of x's shape and dtype
    - cache: what instancenorm_backward needs
    """
    x = v.checked_input("x", x, 3, min_ndim=3)
    return norm_forward(INSTANCE, x, gamma, beta, in_param, kind="instancenorm", name="in_param", mask=mask)


def instancenorm_backward(dout, cache):
    """Backward pass for instance normalization (closed form).

    Returns dx (x's shape), dgamma and dbeta (C,)."""
    cache = check_cache(cache, ("instancenorm",), "instancenorm_backward")
    return norm_backward(dout, cache)


def rmsnorm_forward(x, gamma, rms_param):
    """RMS normalization over the last axis: out = x / sqrt(mean(x**2) + eps) * gamma.

    Inputs:
    - x: data of shape (..., D)
    - gamma: scale per feature, of shape (D,)
    - rms_param: dict with optional key eps; None (the default) is
      ``np.finfo(x.dtype).eps``, as ``torch.nn.functional.rms_norm``
    Returns a tuple of:
    - out: output of x's shape and dtype
    - cache: what rmsnorm_backward needs
    """
    rms_param = v.param_dict(rms_param, "rms_param")
    x = v.checked_input("x", x, 1, min_ndim=1)
    D = x.shape[-1]
    gamma = v.param_vector("gamma", gamma, ((D,),), x.dtype)
    eps = rms_param.get("eps")
    eps = v.eps_value(float(np.finfo(x.dtype).eps) if eps is None else eps, x.dtype)
    return normalize("rmsnorm", RMS, x, gamma, np.zeros_like(gamma), eps)


def rmsnorm_backward(dout, cache):
    """Backward pass for RMS normalization (closed form).

    dx = (dxhat - xhat * mean(dxhat * xhat)) / rms,  dxhat = dout * gamma.
    Returns dx (x's shape) and dgamma (D,)."""
    cache = check_cache(cache, ("rmsnorm",), "rmsnorm_backward")
    dx, dgamma, _ = norm_backward(dout, cache)
    return dx, dgamma


__all__ = ["instancenorm_forward", "instancenorm_backward", "rmsnorm_forward", "rmsnorm_backward"]
