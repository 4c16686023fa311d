"""Batch-norm variants with PyTorch conventions, on the fused kernels: batch
renormalization, ghost batch norm, and frozen batch norm (torchvision's).

Each extends ``normgrad.nn.BatchNorm1d/2d``'s bookkeeping (momentum, unbiased running
variance, ``num_batches_tracked``, state-dict keys); the maths is that of
``normgrad.functional.batchvariants``.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..core import validate as v
from .module import Module
from .norm import _BatchNorm


def _spatial_check(ndims: tuple[int, ...]):
    def check(self, x):
        if x.ndim not in ndims:
            raise ValueError(f"expected {' or '.join(f'{n}D' for n in ndims)} input (got {x.ndim}D input)")
    return check


class _BatchRenorm(_BatchNorm):
    """Batch renormalization (Ioffe 2017): in training, y = gamma * (xhat * r + d) + beta
    with r = clip(s_B / s, 1/rmax, rmax), d = clip((m_B - running_mean) / s, -dmax, dmax),
    s = sqrt(running_var + eps), from the running statistics before this batch; r and
    d are constants in the backward. Evaluation (and ``track_running_stats=False``,
    where there is nothing to correct towards): batch norm."""

    def __init__(self, num_features: int, rmax: float = 3.0, dmax: float = 5.0, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)
        self.rmax = v.real_value("rmax", rmax)
        self.dmax = v.real_value("dmax", dmax)
        if not 1.0 <= self.rmax < np.inf:
            raise ValueError(f"rmax must be a finite number >= 1, got {rmax}")
        if not 0.0 <= self.dmax < np.inf:
            raise ValueError(f"dmax must be a finite number >= 0, got {dmax}")
        self._correction = None

    def forward(self, x):
        renorm = self.training and self.track_running_stats
        if renorm:
            std = np.sqrt(self.buffers["running_var"].astype(np.float64) + self.eps)
            old_mean = self.buffers["running_mean"].astype(np.float64)
        y = super().forward(x)
        self._correction = None
        if not renorm:
            return y
        _, stats, _ = self._saved
        r = np.clip(np.sqrt(stats.var + self.eps) / std, 1.0 / self.rmax, self.rmax)
        d = np.clip((stats.mean - old_mean) / std, -self.dmax, self.dmax)
        gamma, beta = (a.astype(np.float64) for a in self._gamma_beta())
        # y = gamma * xhat + beta  ->  gamma * (xhat * r + d) + beta = y * r + (gamma * d + beta * (1 - r))
        shape = (1, -1) + (1,) * (y.ndim - 2)
        y *= r.astype(y.dtype).reshape(shape)
        y += (gamma * d + beta * (1 - r)).astype(y.dtype).reshape(shape)
        self._correction = (r, d)
        return y

    def backward(self, dout):
        if self._correction is None:
            return super().backward(dout)
        x, stats, batch_stats = self._saved_or_raise()
        r, d = self._correction
        gamma, _ = self._gamma_beta()
        dx, dgamma_xhat, dbeta = kernels.batchnorm_backward(dout, x, gamma * r, stats, training=batch_stats)
        self._set_grads(r * dgamma_xhat + d * dbeta, dbeta)
        return dx


class BatchRenorm1d(_BatchRenorm):
    """Batch renormalization over (N, C) or (N, C, L)."""

    _check_input_dim = _spatial_check((2, 3))


class BatchRenorm2d(_BatchRenorm):
    """Batch renormalization over (N, C, H, W)."""

    _check_input_dim = _spatial_check((4,))


class _GhostBatchNorm(_BatchNorm):
    """Ghost batch norm: in training, each consecutive chunk of ``virtual_batch_size``
    examples is normalized with its own statistics (the last may be shorter), and the
    running statistics take one update per chunk, in order. Evaluation: batch norm."""

    def __init__(self, num_features: int, virtual_batch_size: int, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)
        self.virtual_batch_size = v.integer_value("virtual_batch_size", virtual_batch_size)
        if self.virtual_batch_size < 2:
            raise ValueError(f"virtual_batch_size must be >= 2, got {virtual_batch_size}")
        self._chunks = None

    def forward(self, x):
        self._chunks = None
        if not self.training:
            return super().forward(x)
        x = self._checked(x)
        B = self.virtual_batch_size
        ys, chunks = [], []
        for start in range(0, x.shape[0], B):
            ys.append(super().forward(x[start:start + B]))
            chunks.append(self._saved)
        self._chunks = chunks
        return np.concatenate(ys)

    def backward(self, dout):
        if self._chunks is None:
            return super().backward(dout)
        dout = v.float_array("dout", dout)
        gamma, _ = self._gamma_beta()
        dxs, dgamma, dbeta, start = [], 0.0, 0.0, 0
        for x, stats, batch_stats in self._chunks:
            dx, dg, db = kernels.batchnorm_backward(dout[start:start + x.shape[0]], x, gamma, stats,
                                                    training=batch_stats)
            dxs.append(dx)
            dgamma, dbeta, start = dgamma + dg, dbeta + db, start + x.shape[0]
        if start != dout.shape[0]:
            raise ValueError(f"dout has {dout.shape[0]} rows, the forward had {start}")
        self._set_grads(np.asarray(dgamma), np.asarray(dbeta))
        return np.concatenate(dxs)


class GhostBatchNorm1d(_GhostBatchNorm):
    """Ghost batch norm over (N, C) or (N, C, L)."""

    _check_input_dim = _spatial_check((2, 3))


class GhostBatchNorm2d(_GhostBatchNorm):
    """Ghost batch norm over (N, C, H, W)."""

    _check_input_dim = _spatial_check((4,))


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
        self._scale = scale
        return x * scale + shift

    def backward(self, dout):
        if self._scale is None:
            raise RuntimeError("FrozenBatchNorm2d.backward called before forward")
        return v.float_array("dout", dout) * self._scale
