"""Spatial group normalization, CS231n-compatible.

The C channels are split into G groups; each example's group is normalized by
its own mean and variance over (C/G, H, W), then every channel is scaled and
shifted by its own gamma and beta. This is layer norm after a reshape: x of
shape (N, C, H, W) is viewed (no copy) as (N, G, C/G, H*W) and normalized over
the last two axes (``core.specs.GROUP``).
"""

from __future__ import annotations

from ..core import validate as v
from ..core.specs import GROUP
from ._norm import check_cache, norm_backward
from .generic import norm_forward


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param, *, mask=None):
    """Group normalization over (C/G, H, W) per example and group.

    Inputs:
    - x: data of shape (N, C, H, W)
    - gamma, beta: scale and shift per channel, each of shape (1, C, 1, 1) or (C,)
    - G: number of groups, an integer that divides C
    - gn_param: dict with optional key eps (default 1e-5)
    - mask (keyword, normgrad's addition): None, or bool of shape (N, H, W), True = a
      valid position: each example's group statistics over its valid positions
    Returns a tuple of:
    - out: output of shape (N, C, H, W), x's dtype
    - cache: what spatial_groupnorm_backward needs
    """
    x = v.checked_input("x", x, 4)
    C = x.shape[1]
    return norm_forward(GROUP, x, gamma, beta, gn_param, G, kind="spatial_groupnorm",
                        gamma_shapes=((1, C, 1, 1), (C,)), name="gn_param", mask=mask)


def spatial_groupnorm_backward(dout, cache):
    """Backward pass for spatial group normalization (closed form).

    Inputs:
    - dout: upstream derivatives, of shape (N, C, H, W)
    - cache: from spatial_groupnorm_forward
    Returns a tuple of:
    - dx: (N, C, H, W)
    - dgamma, dbeta: in gamma's shape, (1, C, 1, 1) or (C,)
    """
    cache = check_cache(cache, ("spatial_groupnorm",), "spatial_groupnorm_backward")
    return norm_backward(dout, cache)


__all__ = ["spatial_groupnorm_forward", "spatial_groupnorm_backward"]
