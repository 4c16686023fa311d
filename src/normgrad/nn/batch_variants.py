"""Batch-norm variants with PyTorch conventions, on the fused kernels: batch
renormalization, ghost batch norm, and frozen batch norm (torchvision's).

Each extends ``normgrad.nn.BatchNorm1d/2d``'s bookkeeping (momentum, unbiased running
variance, ``num_batches_tracked``, state-dict keys); the variants' rules (the renorm
correction, the ghost chunks) are ``normgrad.core.variants``, shared with the CS231n
functions and ``normgrad.torch``.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..core import validate as v
from ..core import variants
from ..core.stats import NormStats
from .module import Module
from .norm import BatchNorm1d, BatchNorm2d, Saved, _BatchNorm


class _BatchRenorm(_BatchNorm):
    """Batch renormalization (Ioffe 2017): in training, y = gamma * (xhat * r + d) + beta
    (``core.variants``: r and d from the running statistics before this batch, constants
    in the backward). Evaluation (and ``track_running_stats=False``, where there is
    nothing to correct towards): batch norm."""

    def __init__(self, num_features: int, rmax: float = 3.0, dmax: float = 5.0, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)
        self.rmax, self.dmax = variants.renorm_limits(rmax, dmax)
        self._correction = None

    def forward(self, x):
        self._correction = None
        if not (self.training and self.track_running_stats):
            return super().forward(x)
        # the pipeline's stages: statistics -> correction -> normalize and affine
        x = np.ascontiguousarray(self._checked(x))
        self._run_hooks(x)
        v.enough_values(x.size // self.num_features, f"input of shape {x.shape}")
        stats = NormStats.of(*kernels.batchnorm_stats(x), self.eps)
        old = (self.buffers[k].astype(np.float64) for k in ("running_mean", "running_var"))
        r, d = variants.renorm_correction(stats.mean, stats.var, *old, self.eps, self.rmax, self.dmax)
        gamma, beta = (a.astype(np.float64) for a in self._gamma_beta())
        scale, shift = variants.renorm_affine(gamma, beta, r, d)
        y = kernels.batchnorm_normalize(x, stats.mean, stats.invstd, scale, shift)
        self._track(x.size // self.num_features, stats)
        self._saved = Saved(x, stats, True)
        self._correction = (r, d)
        return y

    def backward(self, dout):
        if self._correction is None:
            return super().backward(dout)
        saved = self._saved_or_raise()
        r, d = self._correction
        gamma, _ = self._gamma_beta()
        dx, dgamma_xhat, dbeta = kernels.batchnorm_backward(dout, saved.x, gamma * r, saved.stats)
        self._set_grads(variants.renorm_param_grads(dgamma_xhat, dbeta, r, d), dbeta)
        return dx


class BatchRenorm1d(_BatchRenorm):
    """Batch renormalization over (N, C) or (N, C, L)."""

    _check_input_dim = BatchNorm1d._check_input_dim


class BatchRenorm2d(_BatchRenorm):
    """Batch renormalization over (N, C, H, W)."""

    _check_input_dim = BatchNorm2d._check_input_dim


class _GhostBatchNorm(_BatchNorm):
    """Ghost batch norm: in training, each consecutive chunk of ``virtual_batch_size``
    examples is normalized with its own statistics (the last may be shorter), and the
    running statistics take one update per chunk, in order (``core.variants``).
    Evaluation: batch norm. A refused input changes nothing: the whole batch is checked
    before the first chunk runs."""

    def __init__(self, num_features: int, virtual_batch_size: int, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)
        self.virtual_batch_size = variants.virtual_batch_size_value(virtual_batch_size)
        self._chunks = None

    def forward(self, x):
        self._chunks = None
        if not self.training:
            return super().forward(x)
        x = self._checked(x)
        v.finite("x", x)
        bounds = variants.ghost_chunks(x.shape, self.virtual_batch_size)
        ys, chunks = [], []
        for lo, hi in bounds:
            ys.append(super().forward(x[lo:hi]))
            chunks.append(self._saved)
        self._chunks = chunks
        return np.concatenate(ys)

    def backward(self, dout):
        if self._chunks is None:
            return super().backward(dout)
        shape = (sum(c.x.shape[0] for c in self._chunks), *self._chunks[0].x.shape[1:])
        dout = v.upstream(dout, shape, self._chunks[0].x.dtype)
        gamma, _ = self._gamma_beta()
        dxs, dgamma, dbeta, start = [], 0.0, 0.0, 0
        for c in self._chunks:
            rows = c.x.shape[0]
            dx, dg, db = kernels.batchnorm_backward(dout[start:start + rows], c.x, gamma, c.stats)
            dxs.append(dx)
            dgamma, dbeta, start = dgamma + dg, dbeta + db, start + rows
        self._set_grads(np.asarray(dgamma), np.asarray(dbeta))
        return np.concatenate(dxs)


class GhostBatchNorm1d(_GhostBatchNorm):
    """Ghost batch norm over (N, C) or (N, C, L)."""

    _check_input_dim = BatchNorm1d._check_input_dim


class GhostBatchNorm2d(_GhostBatchNorm):
    """Ghost batch norm over (N, C, H, W)."""

    _check_input_dim = BatchNorm2d._check_input_dim


class FrozenBatchNorm2d(Module):
    """Batch norm with fixed statistics and affine (torchvision's): y = x * scale + shift,
    scale = weight / sqrt(running_var + eps), shift = bias - running_mean * scale.
    Everything is a buffer (state-dict keys weight, bias, running_mean, running_var);
    ``backward`` returns dx only. x: (N, C, H, W)."""

    def __init__(self, num_features: int, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        self.num_features = v.positive_integer("num_features", num_features)
        self.eps = v.eps_value(eps)
        dtype = np.dtype(dtype)
        self.buffers["weight"] = np.ones(num_features, dtype)
        self.buffers["bias"] = np.zeros(num_features, dtype)
        self.buffers["running_mean"] = np.zeros(num_features, dtype)
        self.buffers["running_var"] = np.ones(num_features, dtype)
        self._scale = None

    def _coefficients(self, dtype):
        b = {k: a.astype(np.float64) for k, a in self.buffers.items()}
        scale = b["weight"] / np.sqrt(b["running_var"] + self.eps)
        shape = (1, -1, 1, 1)
        return (scale.astype(dtype).reshape(shape),
                (b["bias"] - b["running_mean"] * scale).astype(dtype).reshape(shape))

    def forward(self, x):
        x = v.checked_input("x", x, 4)
        if x.shape[1] != self.num_features:
            raise ValueError(f"expected input of shape (N, {self.num_features}, H, W), got {x.shape}")
        scale, shift = self._coefficients(x.dtype)
        self._scale, self._shape = scale, x.shape
        return x * scale + shift

    def backward(self, dout):
        if self._scale is None:
            raise RuntimeError("FrozenBatchNorm2d.backward called before forward")
        return v.upstream(dout, self._shape, self._scale.dtype) * self._scale
