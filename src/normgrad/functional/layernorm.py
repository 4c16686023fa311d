"""Layer normalization, CS231n-compatible: statistics per example over its features.

Layer norm is batch norm's computation over the other axis: each row of x is
normalized by its own mean and variance, then scaled and shifted per feature by
gamma and beta. It behaves the same in training and at test time.
"""

from __future__ import annotations

from ..core import validate as v
from ..core.specs import LAYER
from ._norm import check_cache, norm_backward
from .generic import norm_forward


def layernorm_forward(x, gamma, beta, ln_param):
    """Layer normalization: out = gamma * (x - mean_row) / sqrt(var_row + eps) + beta.

    Inputs:
    - x: data of shape (N, D)
    - gamma, beta: scale and shift, each of shape (D,)
    - ln_param: dict with optional key eps (default 1e-5); other keys, such as
      the 'mode' a CS231n net passes to every norm, are ignored
    Returns a tuple of:
    - out: output of shape (N, D), x's dtype
    - cache: what layernorm_backward needs
    """
    x = v.checked_input("x", x, 2)
    return norm_forward(LAYER, x, gamma, beta, ln_param, kind="layernorm", name="ln_param")


def layernorm_backward(dout, cache):
    """Backward pass for layer normalization (closed form).

    Inputs:
    - dout: upstream derivatives, of shape (N, D)
    - cache: from layernorm_forward
    Returns a tuple of:
    - dx: (N, D); dgamma, dbeta: (D,)
    """
    cache = check_cache(cache, ("layernorm",), "layernorm_backward")
    return norm_backward(dout, cache)


__all__ = ["layernorm_forward", "layernorm_backward"]
