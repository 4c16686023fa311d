"""The normalize-scale-shift layer that every norm in this package is.

out = gamma * (x - mean) / sqrt(var + eps) + beta

Each public norm only decides three things: the layout of x (group norm views
(N, C, H, W) as (N, G, C/G, H, W)), the axes its statistics reduce over, and the
axes its gamma/beta are shared over. Everything else lives here, once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validate as v
from .stats import Axes, center, moments, normalize_backward, reduce_sum


@dataclass(frozen=True)
class NormCache:
    """What a norm's backward needs: one array of x's size, the rest per channel.

    - kind: which forward made it ('batchnorm', 'layernorm', ...)
    - xhat: normalized input, in the layer's working layout
    - gamma: scale, shaped to broadcast against xhat, in xhat's dtype
    - mean, var: the statistics used (batch or running), float64, broadcastable
    - std, ivar: sqrt(var + eps) and its inverse, in xhat's dtype
    - eps: the epsilon used
    - stats_axes: axes the statistics reduced over, or None when they were
      constants (batch norm in test mode): then x reaches out only through xhat
    - param_axes: axes gamma and beta are shared over
    - out_shape: shape of x and out as the user sees them
    - gamma_shape, gamma_dtype: dgamma and dbeta come back in these
    """

    kind: str
    xhat: np.ndarray
    gamma: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    std: np.ndarray
    ivar: np.ndarray
    eps: float
    stats_axes: Axes | None
    param_axes: Axes
    out_shape: tuple[int, ...]
    gamma_shape: tuple[int, ...]
    gamma_dtype: np.dtype

    @property
    def nbytes(self) -> int:
        """Bytes held by the cache's arrays."""
        return sum(a.nbytes for a in (self.xhat, self.gamma, self.mean, self.var, self.std, self.ivar))


def normalize(
    kind: str,
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float,
    stats_axes: Axes,
    param_axes: Axes,
    out_shape: tuple[int, ...],
    pshape: tuple[int, ...],
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, NormCache]:
    """Normalize ``x`` over ``stats_axes`` (or with fixed ``stats``), scale, shift.

    Inputs:
    - x: validated data in the working layout
    - gamma, beta: validated, in the user's shape
    - pshape: the shape that broadcasts gamma and beta against x
    - stats: (mean, var) to use instead of batch statistics, broadcastable to x
    Returns a tuple of:
    - out: x's shape and dtype, reshaped to ``out_shape``
    - cache: a NormCache; ``cache.mean``/``cache.var`` are the statistics used
    """
    dtype = x.dtype
    if stats is None:
        mean, var, xmu = moments(x, stats_axes)
        if not np.isfinite(var).all():
            raise ValueError("x: the variance of some channel overflows float64 (values near 1e154 or beyond); "
                             "rescale x")
    else:
        mean, var = (np.asarray(s, dtype=np.float64) for s in stats)
        xmu = center(x, mean)
        stats_axes = None
    std64 = np.sqrt(var + eps)
    std, ivar = std64.astype(dtype), (1.0 / std64).astype(dtype)
    xhat = xmu
    xhat *= ivar
    gamma_w = gamma.reshape(pshape).astype(dtype, copy=True)  # the cache's own copy
    beta_w = beta.reshape(pshape).astype(dtype, copy=False)
    out = xhat * gamma_w
    out += beta_w
    cache = NormCache(
        kind=kind, xhat=xhat, gamma=gamma_w, mean=mean, var=var, std=std, ivar=ivar,
        eps=eps, stats_axes=stats_axes, param_axes=param_axes, out_shape=out_shape,
        gamma_shape=gamma.shape, gamma_dtype=gamma.dtype,
    )
    return out.reshape(out_shape), cache


def check_cache(cache, kinds: tuple[str, ...], func: str) -> NormCache:
    v.cache_of(cache, NormCache, func)
    if cache.kind not in kinds:
        raise ValueError(f"cache comes from {cache.kind}_forward, not from {func}")
    return cache


def param_grads(dout: np.ndarray, cache: NormCache) -> tuple[np.ndarray, np.ndarray]:
    """dgamma = sum(dout * xhat), dbeta = sum(dout) over the shared axes, in gamma's shape."""
    dgamma = reduce_sum(dout * cache.xhat, cache.param_axes, cache.gamma_dtype)
    dbeta = reduce_sum(dout, cache.param_axes, cache.gamma_dtype)
    return dgamma.reshape(cache.gamma_shape), dbeta.reshape(cache.gamma_shape)


def working_dout(dout, cache: NormCache) -> np.ndarray:
    """Validate dout against the forward's output and view it in the working layout."""
    return v.upstream(dout, cache.out_shape, cache.xhat.dtype).reshape(cache.xhat.shape)


def norm_backward(dout, cache: NormCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form backward of :func:`normalize`: returns (dx, dgamma, dbeta)."""
    dout = working_dout(dout, cache)
    dgamma, dbeta = param_grads(dout, cache)
    dxhat = dout * cache.gamma
    if cache.stats_axes is None:
        dx = dxhat * cache.ivar
    else:
        dx = normalize_backward(dxhat, cache.xhat, cache.ivar, cache.stats_axes)
    return dx.reshape(cache.out_shape), dgamma, dbeta
