"""Batch normalization, CS231n-compatible: (N, D) and spatial (N, C, H, W).

The forward is the computational graph of the seeds, nine small gates:

    1. mu      = 1/N * sum(x, axis=0)        mini-batch mean
    2. xmu     = x - mu                      centre
    3. sq      = xmu ** 2
    4. var     = 1/N * sum(sq, axis=0)       mini-batch (biased) variance
    5. sqrtvar = sqrt(var + eps)
    6. ivar    = 1 / sqrtvar
    7. xhat    = xmu * ivar                  normalize
    8. gammax  = gamma * xhat                scale
    9. out     = gammax + beta               shift

It is computed fused and stably (see ``stats.py``); ``batchnorm_backward``
walks the same numbers in reverse, ``batchnorm_backward_alt`` is the closed
form. Both take the same cache.

Running statistics follow CS231n (``core.running.CS231N``): running = momentum *
running + (1 - momentum) * batch, with the biased batch variance; missing ones
start at zeros, as in the course's starter code.
"""

from __future__ import annotations

import numpy as np

from ..core import validate as v
from ..core.specs import BATCH
from ..core.stats import reduce_sum
from ._norm import check_cache, norm_backward, working_dout
from .generic import norm_forward

_BN_KINDS = ("batchnorm",)


def batchnorm_forward(x, gamma, beta, bn_param, *, mask=None):
    """Batch normalization: out = gamma * (x - mean) / sqrt(var + eps) + beta.

    In train mode mean and var are the mini-batch's, per feature, and the
    running averages in ``bn_param`` are updated; in test mode the running
    averages are used instead.

    Inputs:
    - x: data of shape (N, D)
    - gamma, beta: scale and shift, each of shape (D,)
    - bn_param: dict with keys
      - mode: 'train' or 'test' (required)
      - eps: constant for numeric stability, > 0 (default 1e-5)
      - momentum: constant for the running averages, in [0, 1] (default 0.9)
      - running_mean, running_var: arrays of shape (D,), replaced by new arrays
    - mask (keyword, normgrad's addition): None, or bool of shape (N,), True = a valid
      row: in train mode the statistics are those of the valid rows only, every row is
      normalized with them (the backward gives the true gradient of that function)
    Returns a tuple of:
    - out: output of shape (N, D), x's dtype
    - cache: what batchnorm_backward and batchnorm_backward_alt need
    """
    x = v.checked_input("x", x, 2)
    return norm_forward(BATCH, x, gamma, beta, bn_param, kind="batchnorm", mask=mask)


def batchnorm_backward(dout, cache):
    """Backward pass for batch normalization, staged gate by gate.

    Walks the forward's nine gates (module docstring) in reverse; each
    intermediate gradient is named after its forward variable.

    Inputs:
    - dout: upstream derivatives, of shape (N, D)
    - cache: from batchnorm_forward
    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, D)
    - dgamma: gradient with respect to gamma, of shape (D,)
    - dbeta: gradient with respect to beta, of shape (D,)
    """
    cache = check_cache(cache, _BN_KINDS, "batchnorm_backward")
    if cache.weights is not None:  # the gates above are the unmasked graph: a masked forward takes the closed form
        return norm_backward(dout, cache)
    N, D = cache.out_shape
    dout = working_dout(dout, cache).reshape(N, D)
    dtype = dout.dtype
    xhat = cache.xhat.reshape(N, D)
    gamma, ivar, sqrtvar = (a.reshape(D) for a in (cache.gamma, cache.invstd, cache.std))  # gate 6's ivar
    xmu = xhat * sqrtvar  # the value of gate 2, rebuilt: the cache keeps one (N, D) array

    def colsum(a):  # sum over the batch, accumulated in float64
        return reduce_sum(a, (0,), dtype)

    # 9. forward was: out = gammax + beta
    dbeta = colsum(dout)
    dgammax = dout
    # 8. forward was: gammax = gamma * xhat
    dgamma = colsum(dgammax * xhat)
    dxhat = dgammax * gamma
    # 7. forward was: xhat = xmu * ivar  (xmu feeds gates 7 and 3: first branch)
    divar = colsum(dxhat * xmu)
    dxmu1 = dxhat * ivar
    if not cache.batch_stats:
        # test mode: mu and var were the running averages, constants here,
        # so gates 1-6 carry no gradient back to x.
        return dxmu1, dgamma.astype(cache.gamma_dtype), dbeta.astype(cache.gamma_dtype)
    # 6. forward was: ivar = 1 / sqrtvar
    dsqrtvar = -1.0 / sqrtvar**2 * divar
    # 5. forward was: sqrtvar = sqrt(var + eps)
    dvar = 0.5 / sqrtvar * dsqrtvar
    # 4. forward was: var = 1/N * sum(sq, axis=0)
    dsq = np.ones((N, D), dtype=dtype) / N * dvar
    # 3. forward was: sq = xmu ** 2  (second branch into xmu)
    dxmu2 = 2 * xmu * dsq
    # 2. forward was: xmu = x - mu  (the two branches into xmu add up)
    dx1 = dxmu1 + dxmu2
    dmu = -colsum(dxmu1 + dxmu2)
    # 1. forward was: mu = 1/N * sum(x, axis=0)
    dx2 = np.ones((N, D), dtype=dtype) / N * dmu
    # 0. x feeds gates 1 and 2: its two gradients add up
    dx = dx1 + dx2
    return dx, dgamma.astype(cache.gamma_dtype), dbeta.astype(cache.gamma_dtype)


def batchnorm_backward_alt(dout, cache):
    """Backward pass for batch normalization, closed form.

    With dxhat = dout * gamma and means over the batch:
        dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sqrt(var + eps)
        dgamma = sum(dout * xhat),  dbeta = sum(dout)

    Inputs:
    - dout: upstream derivatives, of shape (N, D)
    - cache: from batchnorm_forward (the same cache batchnorm_backward takes)
    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, D)
    - dgamma, dbeta: gradients with respect to gamma and beta, each of shape (D,)
    """
    cache = check_cache(cache, _BN_KINDS, "batchnorm_backward_alt")
    return norm_backward(dout, cache)


def spatial_batchnorm_forward(x, gamma, beta, bn_param, *, mask=None):
    """Spatial batch normalization: statistics per channel over (N, H, W).

    Inputs:
    - x: data of shape (N, C, H, W)
    - gamma, beta: scale and shift, each of shape (C,)
    - bn_param: as for batchnorm_forward
    - mask (keyword): None, or bool of shape (N, H, W), True = valid position
    Returns a tuple of:
    - out: output of shape (N, C, H, W), x's dtype
    - cache: what spatial_batchnorm_backward needs
    """
    x = v.checked_input("x", x, 4)
    return norm_forward(BATCH, x, gamma, beta, bn_param, kind="spatial_batchnorm", mask=mask)


def spatial_batchnorm_backward(dout, cache):
    """Backward pass for spatial batch normalization (closed form).

    Inputs:
    - dout: upstream derivatives, of shape (N, C, H, W)
    - cache: from spatial_batchnorm_forward
    Returns a tuple of:
    - dx: (N, C, H, W); dgamma, dbeta: (C,)
    """
    cache = check_cache(cache, ("spatial_batchnorm",), "spatial_batchnorm_backward")
    return norm_backward(dout, cache)


__all__ = [
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "spatial_batchnorm_forward",
    "spatial_batchnorm_backward",
]
