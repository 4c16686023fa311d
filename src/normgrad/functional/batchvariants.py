"""Variants of batch normalization, CS231n-style: batch renormalization, ghost batch
norm, and folding an inference-mode batch norm into the layer before it.

- Batch renormalization (Ioffe, 2017) corrects the batch statistics towards the
  running ones in training, so training and inference agree: with the batch's mean
  m_B and std s_B = sqrt(var_B + eps), and the running std s = sqrt(running_var + eps),
  r = clip(s_B / s, 1/rmax, rmax), d = clip((m_B - running_mean) / s, -dmax, dmax),
  out = gamma * (xhat * r + d) + beta, where r and d are constants in the backward.
  With rmax = 1 and dmax = 0 it is batch norm.
- Ghost batch norm (Hoffer et al., 2017) normalizes each consecutive chunk of
  ``virtual_batch_size`` rows with its own statistics, as batch norm called chunk by
  chunk would, running statistics updated once per chunk in order.
- ``fold_batchnorm`` returns the weight and bias of one affine or conv layer that
  computes layer-then-batch-norm(eval) in one step.

Running statistics follow ``batchnorm_forward`` (``core.running.CS231N``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..core import running, variants
from ..core import validate as v
from ..core.specs import BATCH
from .generic import norm_forward
from ._norm import NormCache, check_cache, norm_backward


@dataclass(frozen=True)
class RenormCache:
    """The batch norm's cache, and the corrections r and d (float64, (1, 1, C, 1))."""

    norm: NormCache
    r: np.ndarray
    d: np.ndarray


def _batch_input(x) -> np.ndarray:
    """x of shape (N, D) or (N, C, H, W), non-empty and finite."""
    x = v.float_array("x", x)
    if x.ndim not in (2, 4):
        raise ValueError(f"x must have shape (N, D) or (N, C, H, W), got {x.shape}")
    return v.checked_input("x", x, x.ndim)


def batchrenorm_forward(x, gamma, beta, bn_param):
    """Batch renormalization: out = gamma * (xhat * r + d) + beta.

    Inputs:
    - x: data of shape (N, D) or (N, C, H, W)
    - gamma, beta: scale and shift, each of shape (C,)
    - bn_param: as batchnorm_forward's, plus rmax (default 3.0, >= 1) and dmax
      (default 5.0, >= 0); in train mode r and d come from the running statistics
      before this batch updates them
    Returns (out, cache) for batchrenorm_backward. In test mode: batch norm with
    the running statistics (r = 1, d = 0).
    """
    x = _batch_input(x)
    mode = v.mode_value(bn_param)
    rmax, dmax = variants.renorm_limits(bn_param.get("rmax", 3.0), bn_param.get("dmax", 5.0))
    C = x.shape[1]
    old_mean, old_var = (a.astype(np.float64) for a in running.read_cs231n(bn_param, C, x.dtype))
    out, cache = norm_forward(BATCH, x, gamma, beta, bn_param, kind="batchrenorm")
    if mode != "train":
        return out, RenormCache(cache, np.ones_like(cache.mean), np.zeros_like(cache.mean))
    shape = cache.mean.shape
    r, d = variants.renorm_correction(cache.mean, cache.var, old_mean.reshape(shape), old_var.reshape(shape),
                                      cache.eps, rmax, dmax)
    beta_w = v.param_vector("beta", beta, ((C,),), x.dtype).astype(np.float64).reshape(shape)
    scale, shift = variants.renorm_affine(cache.gamma.astype(np.float64), beta_w, r, d)
    out = cache.xhat * scale.astype(x.dtype) + shift.astype(x.dtype)
    return out.reshape(x.shape), RenormCache(cache, r, d)


def batchrenorm_backward(dout, cache):
    """Backward of batchrenorm_forward with r and d constants: returns (dx, dgamma, dbeta).

    dx is batch norm's closed form with gamma * r in place of gamma;
    dgamma = sum(dout * (xhat * r + d)) = r * sum(dout * xhat) + d * sum(dout).

    Inputs:
    - dout: upstream derivatives, of x's shape, (N, D) or (N, C, H, W)
    - cache: from batchrenorm_forward
    Returns a tuple of:
    - dx: of x's shape
    - dgamma, dbeta: each of shape (C,)
    """
    v.cache_of(cache, RenormCache, "batchrenorm_forward")
    norm = check_cache(cache.norm, ("batchrenorm",), "batchrenorm_backward")
    scaled = dataclasses.replace(norm, gamma=(norm.gamma * cache.r).astype(norm.gamma.dtype))
    dx, dgamma_xhat, dbeta = norm_backward(dout, scaled)
    r, d = cache.r.reshape(dbeta.shape), cache.d.reshape(dbeta.shape)
    dgamma = variants.renorm_param_grads(dgamma_xhat, dbeta, r, d).astype(dbeta.dtype)
    return dx, dgamma, dbeta


@dataclass(frozen=True)
class GhostCache:
    """One batch-norm cache per chunk of rows, in order."""

    chunks: tuple


def ghost_batchnorm_forward(x, gamma, beta, bn_param):
    """Ghost batch norm: each consecutive chunk of ``bn_param['virtual_batch_size']``
    rows normalized with its own statistics (the last chunk may be shorter).

    Inputs:
    - x: data of shape (N, D) or (N, C, H, W)
    - gamma, beta: each of shape (C,)
    - bn_param: as batchnorm_forward's, plus virtual_batch_size (an int >= 2); in
      train mode the running statistics take one update per chunk, in order
    Returns (out, cache) for ghost_batchnorm_backward. In test mode: batch norm
    with the running statistics.
    """
    if not isinstance(bn_param, dict):
        raise TypeError(f"bn_param must be a dict, got {type(bn_param).__name__}")
    B = variants.virtual_batch_size_value(bn_param.get("virtual_batch_size"))
    x = _batch_input(x)
    if v.mode_value(bn_param) != "train":
        out, cache = norm_forward(BATCH, x, gamma, beta, bn_param, kind="ghost_batchnorm")
        return out, GhostCache((cache,))
    outs, caches = [], []
    for lo, hi in variants.ghost_chunks(x.shape, B):
        out, cache = norm_forward(BATCH, x[lo:hi], gamma, beta, bn_param, kind="ghost_batchnorm")
        outs.append(out)
        caches.append(cache)
    return np.concatenate(outs), GhostCache(tuple(caches))


def ghost_batchnorm_backward(dout, cache):
    """Backward of ghost_batchnorm_forward: each chunk's closed form; dgamma and dbeta
    summed over the chunks.

    Inputs:
    - dout: upstream derivatives, of x's shape, (N, D) or (N, C, H, W)
    - cache: from ghost_batchnorm_forward
    Returns a tuple of:
    - dx: of x's shape
    - dgamma, dbeta: each of shape (C,)
    """
    v.cache_of(cache, GhostCache, "ghost_batchnorm_forward")
    chunks = [check_cache(c, ("ghost_batchnorm",), "ghost_batchnorm_backward") for c in cache.chunks]
    N = sum(c.out_shape[0] for c in chunks)
    dout = v.upstream(dout, (N, *chunks[0].out_shape[1:]), chunks[0].xhat.dtype)
    dxs, dgamma, dbeta, start = [], 0.0, 0.0, 0
    for c in chunks:
        rows = c.out_shape[0]
        dx, dg, db = norm_backward(dout[start:start + rows], c)
        dxs.append(dx)
        dgamma, dbeta, start = dgamma + dg.astype(np.float64), dbeta + db.astype(np.float64), start + rows
    dtype = chunks[0].gamma_dtype
    return np.concatenate(dxs), np.asarray(dgamma).astype(dtype), np.asarray(dbeta).astype(dtype)


def fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps=1e-5):
    """Fold an inference-mode batch norm into the affine or conv layer before it.

    batchnorm(layer(x)) = layer'(x) with
    weight' = weight * s (per output channel), bias' = (bias - running_mean) * s + beta,
    s = gamma / sqrt(running_var + eps).

    Inputs:
    - weight: (C_out, ...), PyTorch's layout: output channel first (a Linear's
      (out_features, in_features), a Conv2d's (C_out, C_in, kh, kw))
    - bias: (C_out,) or None
    - gamma, beta, running_mean, running_var: (C_out,)
    Returns (weight', bias') in weight's shape and dtype.
    """
    weight = v.param_array("weight", weight)
    if weight.ndim < 1 or weight.size == 0:
        raise ValueError(f"weight must have the output channels on axis 0, got shape {weight.shape}")
    v.finite("weight", weight)
    C = weight.shape[0]
    shape = ((C,),)
    gamma, beta, mean, var = (v.param_vector(name, a, shape, weight.dtype).astype(np.float64) for name, a in (
        ("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)))
    bias = np.zeros(C) if bias is None else v.param_vector("bias", bias, shape, weight.dtype).astype(np.float64)
    if (var < 0).any():
        raise ValueError("running_var must be >= 0 everywhere")
    eps = v.eps_value(eps, weight.dtype)
    scale = gamma / np.sqrt(var + eps)
    new_weight = weight * scale.reshape(C, *[1] * (weight.ndim - 1))
    return new_weight.astype(weight.dtype), ((bias - mean) * scale + beta).astype(weight.dtype)


__all__ = ["batchrenorm_forward", "batchrenorm_backward", "ghost_batchnorm_forward", "ghost_batchnorm_backward",
           "fold_batchnorm"]
