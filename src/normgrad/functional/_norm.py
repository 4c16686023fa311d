"""The normalize-scale-shift layer that every norm in this package is, in readable NumPy.

out = gamma * (x - mean) / sqrt(var + eps) + beta

A norm is chosen by its ``NormSpec`` (``normgrad.core.specs``): x is viewed as
(N, G, K, L) and the statistics reduce over the spec's axes of that view. The
public functions (batchnorm_forward, layernorm_forward, ...) only validate their
CS231n-style arguments and call ``normalize``; their backward is ``norm_backward``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import validate as v
from ..core.specs import NormSpec, View
from ..core.stats import center, mean_square, moments, normalize_backward, reduce_sum


@dataclass(frozen=True)
class NormCache:
    """What a norm's backward needs: one array of x's size, the rest per statistic.

    - kind: which forward made it ('batchnorm', 'layernorm', ...)
    - spec: the norm's description (axes of the view)
    - xhat: normalized input, in the (N, G, K, L) view
    - gamma: scale, shaped (1, G, K, 1), in xhat's dtype
    - mean, var: the statistics used (batch or running), float64, broadcastable
      against the view
    - std, invstd: sqrt(var + eps) and its inverse, in xhat's dtype
    - eps: the epsilon used
    - batch_stats: False when the statistics were constants (batch norm in test
      mode): then x reaches out only through xhat
    - out_shape: shape of x and out as the user sees them
    - gamma_shape, gamma_dtype: dgamma and dbeta come back in these
    - weights: None, or the padding mask as weights (N, 1, 1, L) against the view (1
      valid, 0 padding): the statistics were over the valid positions only
    """

    kind: str
    spec: NormSpec
    xhat: np.ndarray
    gamma: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    std: np.ndarray
    invstd: np.ndarray
    eps: float
    batch_stats: bool
    out_shape: tuple[int, ...]
    gamma_shape: tuple[int, ...]
    gamma_dtype: np.dtype
    weights: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        """Bytes held by the cache's arrays."""
        return sum(a.nbytes for a in (self.xhat, self.gamma, self.mean, self.var, self.std, self.invstd))


def per_channel(a: np.ndarray, view: View) -> np.ndarray:
    """A (C,) vector shaped (1, G, K, 1) against the view."""
    return a.reshape(1, view[1], view[2], 1)


def normalize(kind: str, spec: NormSpec, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float,
              G: int | None = None, stats: tuple[np.ndarray, np.ndarray] | None = None, weights=None):
    """Normalize ``x`` with batch statistics over the spec's axes (or fixed ``stats``), scale, shift.

    Inputs:
    - x: validated data, any shape the spec takes
    - gamma, beta: validated, one value per channel, in the user's shape
    - G: groups, for specs that take them
    - stats: per-channel (mean, var), each (C,), to use instead of batch statistics
    - weights: (N, L) of the view, 1 for a valid position, 0 for padding
      (``NormSpec.mask_weights``): statistics over the valid positions only
    Returns a tuple of:
    - out: x's shape and dtype
    - cache: a NormCache; ``cache.mean``/``cache.var`` are the statistics used
    """
    dtype = x.dtype
    view = spec.view(x.shape, G)
    xv = x.reshape(view)
    w = None if weights is None or stats is not None else weights.reshape(view[0], 1, 1, view[3])
    if stats is None and not spec.centered:  # RMS norm: var is the mean square, nothing subtracted
        var = mean_square(xv, spec.reduce_axes, w)
        mean, xmu = np.zeros_like(var), xv.copy()
    elif stats is None:
        mean, var, xmu = moments(xv, spec.reduce_axes, w)
        if not np.isfinite(var).all():
            raise ValueError("x: the variance of some channel overflows float64 (values near 1e154 or beyond); "
                             "rescale x")
    else:
        mean, var = (per_channel(np.asarray(s, dtype=np.float64), view) for s in stats)
        xmu = center(xv, mean)
    std64 = np.sqrt(var + eps)
    std, invstd = std64.astype(dtype), (1.0 / std64).astype(dtype)
    xhat = xmu
    xhat *= invstd
    gamma_w = per_channel(gamma, view).astype(dtype, copy=True)  # the cache's own copy
    out = xhat * gamma_w
    out += per_channel(beta, view).astype(dtype, copy=False)
    cache = NormCache(
        kind=kind, spec=spec, xhat=xhat, gamma=gamma_w, mean=mean, var=var, std=std, invstd=invstd, eps=eps,
        batch_stats=stats is None, out_shape=x.shape, gamma_shape=gamma.shape, gamma_dtype=gamma.dtype, weights=w,
    )
    return out.reshape(x.shape), cache


def check_cache(cache, kinds: tuple[str, ...], func: str) -> NormCache:
    v.cache_of(cache, NormCache, func)
    if cache.kind not in kinds:
        raise ValueError(f"cache comes from {cache.kind}_forward, not from {func}")
    return cache


def param_grads(dout: np.ndarray, cache: NormCache) -> tuple[np.ndarray, np.ndarray]:
    """dgamma = sum(dout * xhat), dbeta = sum(dout) over the shared axes, in gamma's shape and dtype."""
    axes = cache.spec.param_axes
    dgamma = reduce_sum(dout * cache.xhat, axes, cache.gamma_dtype)
    dbeta = reduce_sum(dout, axes, cache.gamma_dtype)
    return dgamma.reshape(cache.gamma_shape), dbeta.reshape(cache.gamma_shape)


def working_dout(dout, cache: NormCache) -> np.ndarray:
    """Validate dout against the forward's output and view it like xhat."""
    return v.upstream(dout, cache.out_shape, cache.xhat.dtype).reshape(cache.xhat.shape)


def norm_backward(dout, cache: NormCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form backward of :func:`normalize`: returns (dx, dgamma, dbeta)."""
    dout = working_dout(dout, cache)
    dgamma, dbeta = param_grads(dout, cache)
    dxhat = dout * cache.gamma
    if cache.batch_stats:
        dx = normalize_backward(dxhat, cache.xhat, cache.invstd, cache.spec.reduce_axes, cache.spec.centered,
                                cache.weights)
    else:
        dx = dxhat * cache.invstd
    return dx.reshape(cache.out_shape), dgamma, dbeta
