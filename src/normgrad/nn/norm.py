"""Normalization modules with PyTorch conventions, on the fused kernels.

Batch-norm modules match ``torch.nn.BatchNorm*d``: ``momentum`` is the weight of
the new batch (None = cumulative average), the running variance is the unbiased
batch variance (``core.running.TORCH``), ``num_batches_tracked`` counts training
batches, and the state dict keys are ``weight, bias, running_mean, running_var,
num_batches_tracked``.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

from .. import kernels
from ..core import running
from ..core import validate as v
from ..core.specs import INSTANCE, RMS
from .module import Module


class _NormBase(Module):
    def __init__(self, num_features: int, eps: float, affine: bool, dtype):
        super().__init__()
        self.num_features = v.positive_integer("num_features", num_features)
        self.eps = v.eps_value(eps)
        self.affine = bool(affine)
        self.dtype = np.dtype(dtype)
        if self.affine:
            self.params["weight"] = np.ones(num_features, self.dtype)
            self.params["bias"] = np.zeros(num_features, self.dtype)
        self._saved = None

    def _init_running(self, momentum: float | None, track_running_stats: bool) -> None:
        """momentum and, when tracked, the running-statistics buffers (PyTorch's names and starts)."""
        self.momentum = None if momentum is None else v.momentum_value(momentum)
        self.track_running_stats = bool(track_running_stats)
        if self.track_running_stats:
            self.buffers["running_mean"] = np.zeros(self.num_features, self.dtype)
            self.buffers["running_var"] = np.ones(self.num_features, self.dtype)
            self.buffers["num_batches_tracked"] = np.array(0, dtype=np.int64)

    def _gamma_beta(self):
        if self.affine:
            return self.params["weight"], self.params["bias"]
        return np.ones(self.num_features), np.zeros(self.num_features)

    def _set_grads(self, dgamma, dbeta):
        if self.affine:
            self.grads["weight"] = dgamma.astype(self.params["weight"].dtype).reshape(self.params["weight"].shape)
            self.grads["bias"] = dbeta.astype(self.params["bias"].dtype).reshape(self.params["bias"].shape)

    def _saved_or_raise(self):
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._saved


class _BatchNorm(_NormBase):
    """Shared by BatchNorm1d and BatchNorm2d; they differ only in ``_check_input_dim``."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=np.float32):
        super().__init__(num_features, eps, affine, dtype)
        self._init_running(momentum, track_running_stats)

    def _check_input_dim(self, x):
        raise NotImplementedError

    def _checked(self, x) -> np.ndarray:
        x = v.float_array("x", x)
        self._check_input_dim(x)
        if x.shape[1] != self.num_features:
            raise ValueError(f"expected {self.num_features} channels (axis 1), got input of shape {x.shape}")
        return x

    def forward(self, x):
        """x: (N, C) or (N, C, L) for 1d, (N, C, H, W) for 2d. Returns y of x's shape and dtype."""
        x = self._checked(x)
        gamma, beta = self._gamma_beta()
        batch_stats = self.training or not self.track_running_stats
        if batch_stats:
            y, stats = kernels.batchnorm_forward(x, gamma, beta, training=True, eps=self.eps)
            if self.training and self.track_running_stats:
                self._update_running(x.size // self.num_features, stats.mean, stats.var)
        else:
            y, stats = kernels.batchnorm_forward(
                x, gamma, beta, training=False, eps=self.eps,
                running_mean=self.buffers["running_mean"], running_var=self.buffers["running_var"])
        self._saved = (x, stats, batch_stats)
        return y

    def _update_running(self, count: int, mean, var):
        """Fold one batch's mean and biased variance (from ``count`` values per channel) into the running stats."""
        b = self.buffers
        b["num_batches_tracked"] = np.array(int(b["num_batches_tracked"]) + 1, dtype=np.int64)
        new_mean, new_var = running.updated(running.TORCH, b["running_mean"], b["running_var"], mean, var, count,
                                            self.momentum, int(b["num_batches_tracked"]))
        b["running_mean"] = new_mean.astype(b["running_mean"].dtype)
        b["running_var"] = new_var.astype(b["running_var"].dtype)

    def backward(self, dout):
        """dout: y's shape. Returns dx; fills grads['weight'], grads['bias'] when affine."""
        x, stats, batch_stats = self._saved_or_raise()
        gamma, _ = self._gamma_beta()
        dx, dgamma, dbeta = kernels.batchnorm_backward(dout, x, gamma, stats, training=batch_stats)
        self._set_grads(dgamma, dbeta)
        return dx


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L), statistics per channel."""

    def _check_input_dim(self, x):
        if x.ndim not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {x.ndim}D input)")


class BatchNorm2d(_BatchNorm):
    """Spatial batch norm over (N, C, H, W), statistics per channel."""

    def _check_input_dim(self, x):
        if x.ndim != 4:
            raise ValueError(f"expected 4D input (got {x.ndim}D input)")


def normalized_shape_value(normalized_shape) -> tuple[int, ...]:
    """``normalized_shape`` (an int or a sequence of them) as a tuple of positive sizes."""
    shape = (normalized_shape,) if isinstance(normalized_shape, Integral) else tuple(normalized_shape)
    if not shape or any(not isinstance(s, Integral) or isinstance(s, bool) or s < 1 for s in shape):
        raise ValueError(f"normalized_shape must be positive sizes, got {normalized_shape!r}")
    return tuple(int(s) for s in shape)


class LayerNorm(_NormBase):
    """Layer norm over the trailing ``normalized_shape`` dimensions of x."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, dtype=np.float32):
        self.normalized_shape = normalized_shape_value(normalized_shape)
        super().__init__(int(np.prod(self.normalized_shape)), eps, elementwise_affine, dtype)
        if self.affine:
            self.params["weight"] = self.params["weight"].reshape(self.normalized_shape)
            self.params["bias"] = self.params["bias"].reshape(self.normalized_shape)

    def forward(self, x):
        """x: (..., *normalized_shape). Returns y of x's shape and dtype."""
        x = v.float_array("x", x)
        k = len(self.normalized_shape)
        if x.shape[x.ndim - k:] != self.normalized_shape or x.ndim <= k:
            raise ValueError(f"expected input of shape (..., {', '.join(map(str, self.normalized_shape))}), "
                             f"got {x.shape}")
        flat = x.reshape(*x.shape[: x.ndim - k], self.num_features)
        gamma, beta = (a.reshape(-1) for a in self._gamma_beta())
        y, stats = kernels.layernorm_forward(flat, gamma, beta, eps=self.eps)
        self._saved = (flat, stats, x.shape)
        return y.reshape(x.shape)

    def backward(self, dout):
        flat, stats, shape = self._saved_or_raise()
        gamma = self._gamma_beta()[0].reshape(-1)
        dout = v.float_array("dout", dout)
        if dout.shape != shape:
            raise ValueError(f"dout must have the forward output's shape {shape}, got {dout.shape}")
        dx, dgamma, dbeta = kernels.layernorm_backward(dout.reshape(flat.shape), flat, gamma, stats)
        self._set_grads(dgamma, dbeta)
        return dx.reshape(shape)


class GroupNorm(_NormBase):
    """Group norm: channels split into ``num_groups``; statistics per example and group."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 dtype=np.float32):
        super().__init__(num_channels, eps, affine, dtype)
        self.num_groups = v.integer_value("num_groups", num_groups)
        if self.num_groups < 1 or num_channels % self.num_groups:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")

    def forward(self, x):
        """x: (N, C, *spatial). Returns y of x's shape and dtype."""
        x = v.float_array("x", x)
        if x.ndim < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected input of shape (N, {self.num_features}, ...), got {x.shape}")
        gamma, beta = self._gamma_beta()
        y, stats = kernels.groupnorm_forward(x, gamma, beta, self.num_groups, eps=self.eps)
        self._saved = (x, stats)
        return y

    def backward(self, dout):
        x, stats = self._saved_or_raise()
        gamma, _ = self._gamma_beta()
        dx, dgamma, dbeta = kernels.groupnorm_backward(dout, x, gamma, self.num_groups, stats)
        self._set_grads(dgamma, dbeta)
        return dx


class RMSNorm(Module):
    """RMS norm over the trailing ``normalized_shape`` dimensions: y = x / rms(x) * weight,
    rms over those dimensions; ``eps`` None is ``np.finfo(x.dtype).eps`` (torch.nn.RMSNorm)."""

    def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True,
                 dtype=np.float32):
        super().__init__()
        self.normalized_shape = normalized_shape_value(normalized_shape)
        self.eps = None if eps is None else v.eps_value(eps)
        self.elementwise_affine = bool(elementwise_affine)
        if self.elementwise_affine:
            self.params["weight"] = np.ones(self.normalized_shape, np.dtype(dtype))
        self._saved = None

    def forward(self, x):
        """x: (..., *normalized_shape). Returns y of x's shape and dtype."""
        x = v.float_array("x", x)
        k = len(self.normalized_shape)
        if x.shape[x.ndim - k:] != self.normalized_shape:
            raise ValueError(f"expected input of shape (..., {', '.join(map(str, self.normalized_shape))}), "
                             f"got {x.shape}")
        D = int(np.prod(self.normalized_shape))
        flat = x.reshape(-1, D)
        gamma = self.params["weight"].reshape(-1) if self.elementwise_affine else np.ones(D)
        eps = float(np.finfo(x.dtype).eps) if self.eps is None else self.eps
        y, stats = kernels.norm_forward(RMS, flat, gamma, np.zeros(D), eps=eps)
        self._saved = (flat, gamma, stats, x.shape)
        return y.reshape(x.shape)

    def backward(self, dout):
        if self._saved is None:
            raise RuntimeError("RMSNorm.backward called before forward")
        flat, gamma, stats, shape = self._saved
        dout = v.upstream(dout, shape, flat.dtype)
        dx, dgamma, _ = kernels.norm_backward(RMS, dout.reshape(flat.shape), flat, gamma, stats)
        if self.elementwise_affine:
            self.grads["weight"] = dgamma.astype(self.params["weight"].dtype).reshape(self.normalized_shape)
        return dx.reshape(shape)


class _InstanceNorm(_NormBase):
    """Instance norm: statistics per example and channel over the spatial axes
    (``torch.nn.InstanceNorm*d``: affine and running statistics off by default; with
    ``track_running_stats``, training updates running averages of the per-instance
    means and unbiased variances, averaged over the batch, and evaluation normalizes
    with them; momentum None leaves them as they are and num_batches_tracked is never
    counted, as there)."""

    spatial_dims = 1

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = False,
                 track_running_stats: bool = False, dtype=np.float32):
        super().__init__(num_features, eps, affine, dtype)
        self._init_running(momentum, track_running_stats)

    def forward(self, x):
        """x: (N, C, *spatial) with ``spatial_dims`` spatial axes. Returns y of x's shape."""
        x = v.float_array("x", x)
        if x.ndim != 2 + self.spatial_dims or x.shape[1] != self.num_features:
            raise ValueError(f"expected input of shape (N, {self.num_features}"
                             f"{', ...' * self.spatial_dims}), got {x.shape}")
        gamma, beta = self._gamma_beta()
        if self.training or not self.track_running_stats:
            y, stats = kernels.norm_forward(INSTANCE, x, gamma, beta, eps=self.eps)
            if self.training and self.track_running_stats:
                self._update_running(x, stats)
            self._saved = (x, stats, True)
        else:
            y, stats = kernels.batchnorm_forward(x, gamma, beta, training=False, eps=self.eps,
                                                 running_mean=self.buffers["running_mean"],
                                                 running_var=self.buffers["running_var"])
            self._saved = (x, stats, False)
        return y

    def _update_running(self, x, stats):
        """As torch.nn.InstanceNorm*d: momentum None means 0 (no update), num_batches_tracked stays 0."""
        b = self.buffers
        count = x.size // (x.shape[0] * x.shape[1])
        momentum = 0.0 if self.momentum is None else self.momentum
        new_mean, new_var = running.updated(running.TORCH, b["running_mean"], b["running_var"],
                                            stats.mean.mean(axis=0), stats.var.mean(axis=0), count, momentum)
        b["running_mean"] = new_mean.astype(b["running_mean"].dtype)
        b["running_var"] = new_var.astype(b["running_var"].dtype)

    def backward(self, dout):
        x, stats, instance_stats = self._saved_or_raise()
        gamma, _ = self._gamma_beta()
        if instance_stats:
            dx, dgamma, dbeta = kernels.norm_backward(INSTANCE, dout, x, gamma, stats)
        else:
            dx, dgamma, dbeta = kernels.batchnorm_backward(dout, x, gamma, stats, training=False)
        self._set_grads(dgamma, dbeta)
        return dx


class InstanceNorm1d(_InstanceNorm):
    """Instance norm over (N, C, L)."""

    spatial_dims = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance norm over (N, C, H, W)."""

    spatial_dims = 2
