"""Normalization modules with PyTorch conventions, on the fused kernels.

``Norm(spec, num_features)`` is any declared norm (``normgrad.NormSpec``) as a module;
batch, group and instance norm are it with their spec and input check.

Batch-norm modules match ``torch.nn.BatchNorm*d``: ``momentum`` is the weight of
the new batch (None = cumulative average), the running variance is the unbiased
batch variance (``core.running.TORCH``), ``num_batches_tracked`` counts training
batches, and the state dict keys are ``weight, bias, running_mean, running_var,
num_batches_tracked``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..core import running
from ..core import validate as v
from ..core.specs import BATCH, GROUP, INSTANCE, RMS, NormSpec
from ..core.stats import NormStats
from .module import Module


@dataclass(frozen=True)
class Saved:
    """What a norm module's backward needs of its last forward.

    - x: the input as the kernels took it (C-contiguous, x's dtype)
    - stats: the NormStats used (batch, per-sample or running statistics)
    - batch_stats: False when the statistics were constants (running statistics)
    - mask: the padding mask the statistics ignored (None: every position counted)
    """

    x: np.ndarray
    stats: NormStats
    batch_stats: bool
    mask: np.ndarray | None = None


class HookHandle:
    """Removes one registered hook."""

    _next = 0

    def __init__(self, hooks: dict):
        HookHandle._next += 1
        self.key, self._hooks = HookHandle._next, hooks

    def remove(self) -> None:
        self._hooks.pop(self.key, None)


class _NormBase(Module):
    """Parameters (weight, bias when affine), eps, and the saved forward."""

    def __init__(self, num_features: int, eps: float, affine: bool, dtype):
        super().__init__()
        self.num_features = v.positive_integer("num_features", num_features)
        self.eps = v.eps_value(eps)
        self.affine = bool(affine)
        self.dtype = np.dtype(dtype)
        if self.affine:
            self.params["weight"] = np.ones(num_features, self.dtype)
            self.params["bias"] = np.zeros(num_features, self.dtype)
        self._saved: Saved | None = None
        self._forward_hooks: dict[int, object] = {}

    def register_forward_hook(self, hook) -> "HookHandle":
        """Call ``hook(module, x)`` with each checked input before the forward computes;
        returns a handle whose ``remove()`` unregisters it."""
        handle = HookHandle(self._forward_hooks)
        self._forward_hooks[handle.key] = hook
        return handle

    def _run_hooks(self, x) -> None:
        for hook in list(self._forward_hooks.values()):
            hook(self, x)

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

    def _saved_or_raise(self) -> Saved:
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._saved


class Norm(_NormBase):
    """Any declared norm as a module with PyTorch's conventions.

    ``Norm(spec, num_features)`` serves a ``NormSpec`` a user declares; batch, group
    and instance norm are this class with their spec and input check. Parameters
    weight and bias (C,) when ``affine``; with ``track_running_stats`` (default: the
    spec's ``running_stats``) buffers running_mean, running_var and
    num_batches_tracked, updated in training (``core.running.TORCH``: momentum is the
    new batch's weight, None a cumulative average; the unbiased batch variance,
    uncentred norms their mean square as it is) and used in evaluation.
    ``num_groups``: G, for a spec whose groups are given.
    """

    spec: NormSpec = BATCH

    def __init__(self, spec: NormSpec | None = None, num_features: int = 1, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool | None = None,
                 num_groups: int | None = None, dtype=np.float32):
        super().__init__(num_features, eps, affine, dtype)
        if spec is not None:
            if not isinstance(spec, NormSpec):
                raise TypeError(f"spec must be a NormSpec, got {type(spec).__name__}")
            self.spec = spec
        self.num_groups = self.spec.num_groups(self.num_features, num_groups) if self.spec.groups == "given" else None
        self._init_running(momentum, self.spec.running_stats if track_running_stats is None else track_running_stats)

    def _check_input_dim(self, x) -> None:
        """The rank check of a named subclass (BatchNorm2d: 4-D); any rank >= 2 here."""
        if x.ndim < 2:
            raise ValueError(f"expected at least 2D input (got {x.ndim}D input)")

    def _checked(self, x) -> np.ndarray:
        x = v.float_array("x", x)
        self._check_input_dim(x)
        if self.spec.channels(x.shape) != self.num_features:
            layout = f"(..., {self.num_features})" if self.spec.features_last else f"(N, {self.num_features}, ...)"
            raise ValueError(f"expected input of shape {layout}, got {x.shape}")
        return x

    def forward(self, x, mask=None):
        """x: (N, C, *spatial), or (..., C) for a features-last spec; mask: None, or bool of
        x's shape without the channel axis, True = valid position (statistics over the
        valid positions only, every position normalized with them; unused in evaluation
        with running statistics). Returns y of x's shape and dtype."""
        x = self._checked(x)
        batch_stats = self.training or not self.track_running_stats
        weights = None if mask is None or not batch_stats else self.spec.mask_weights(mask, x.shape, self.num_groups)
        count = running.valid_counts(self.spec, x.shape, self.num_groups, weights)
        if self.training and self.track_running_stats:
            running.check_count(count, self.spec.centered, f"input of shape {x.shape}")
        self._run_hooks(x)
        gamma, beta = self._gamma_beta()
        fixed = None if batch_stats else (self.buffers["running_mean"], self.buffers["running_var"])
        mask = None if weights is None else mask
        y, stats = kernels.norm_forward(self.spec, x, gamma, beta, G=self.num_groups, eps=self.eps, running=fixed,
                                        mask=mask)
        if self.training and self.track_running_stats:
            self._track(count, stats)
        self._saved = Saved(np.ascontiguousarray(x), stats, batch_stats, mask)
        return y

    def backward(self, dout):
        """dout: y's shape. Returns dx (the true gradient, padding's upstream gradient
        included); fills grads['weight'], grads['bias'] when affine."""
        saved = self._saved_or_raise()
        gamma, _ = self._gamma_beta()
        dx, dgamma, dbeta = kernels.norm_backward(self.spec, dout, saved.x, gamma, saved.stats, G=self.num_groups,
                                                  batch_stats=saved.batch_stats, mask=saved.mask)
        self._set_grads(dgamma, dbeta)
        return dx

    def _track(self, count, stats) -> None:
        """Blend one batch's statistics (from ``count`` values each: ``running.valid_counts``)
        into the running ones (PyTorch's rules): across the batch, num_batches_tracked counts
        and momentum None is a cumulative average; per sample (instance norm), the
        per-sample statistics averaged over the batch, and momentum None leaves them as
        they are."""
        mean, var = running.batch_moments(running.TORCH, stats.mean, stats.var, count, self.spec.across,
                                          self.spec.centered)
        if self.spec.across == "batch":
            self._update_running(mean, var)
        elif self.momentum is not None:
            self._blend(mean, var, self.momentum, 1)

    def _update_running(self, mean, var):
        """Fold one batch's ``running.batch_moments`` into the running statistics, counting it
        in num_batches_tracked."""
        tracked = int(self.buffers["num_batches_tracked"]) + 1
        self._blend(mean, var, self.momentum, tracked)
        self.buffers["num_batches_tracked"] = np.array(tracked, dtype=np.int64)

    def _blend(self, mean, var, momentum, tracked):
        b = self.buffers
        new_mean, new_var = running.blend_in(running.TORCH, b["running_mean"], b["running_var"], mean, var, momentum,
                                             tracked)
        b["running_mean"] = new_mean.astype(b["running_mean"].dtype)
        b["running_var"] = new_var.astype(b["running_var"].dtype)


class _BatchNorm(Norm):
    """Shared by BatchNorm1d and BatchNorm2d; they differ only in ``_check_input_dim``."""

    spec = BATCH

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=np.float32):
        super().__init__(None, num_features, eps, momentum, affine, track_running_stats, dtype=dtype)


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


class LayerNorm(_NormBase):
    """Layer norm over the trailing ``normalized_shape`` dimensions of x."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, dtype=np.float32):
        self.normalized_shape = v.normalized_shape_value(normalized_shape)
        super().__init__(int(np.prod(self.normalized_shape)), eps, elementwise_affine, dtype)
        if self.affine:
            self.params["weight"] = self.params["weight"].reshape(self.normalized_shape)
            self.params["bias"] = self.params["bias"].reshape(self.normalized_shape)

    def forward(self, x):
        """x: (..., *normalized_shape). Returns y of x's shape and dtype."""
        x = v.float_array("x", x)
        v.trailing_shape(x.shape, self.normalized_shape, min_leading=1)
        flat = x.reshape(*x.shape[: x.ndim - len(self.normalized_shape)], self.num_features)
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


class GroupNorm(Norm):
    """Group norm: channels split into ``num_groups``; statistics per example and group.
    x: (N, C, *spatial)."""

    spec = GROUP

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 dtype=np.float32):
        G = v.integer_value("num_groups", num_groups)
        if G < 1 or v.positive_integer("num_channels", num_channels) % G:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        super().__init__(None, num_channels, eps, None, affine, False, G, dtype)


class RMSNorm(Module):
    """RMS norm over the trailing ``normalized_shape`` dimensions: y = x / rms(x) * weight,
    rms over those dimensions; ``eps`` None is ``np.finfo(x.dtype).eps`` (torch.nn.RMSNorm)."""

    def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True,
                 dtype=np.float32):
        super().__init__()
        self.normalized_shape = v.normalized_shape_value(normalized_shape)
        self.eps = None if eps is None else v.eps_value(eps)
        self.elementwise_affine = bool(elementwise_affine)
        if self.elementwise_affine:
            self.params["weight"] = np.ones(self.normalized_shape, np.dtype(dtype))
        self._saved = None

    def forward(self, x):
        """x: (..., *normalized_shape). Returns y of x's shape and dtype."""
        x = v.float_array("x", x)
        v.trailing_shape(x.shape, self.normalized_shape)
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


class _InstanceNorm(Norm):
    """Instance norm: statistics per example and channel over the spatial axes
    (``torch.nn.InstanceNorm*d``: affine and running statistics off by default; with
    ``track_running_stats``, training updates running averages of the per-instance
    means and unbiased variances, averaged over the batch, and evaluation normalizes
    with them; momentum None leaves them as they are and num_batches_tracked is never
    counted, as there). Training needs more than one spatial element, as torch's."""

    spec = INSTANCE
    spatial_dims = 1

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = False,
                 track_running_stats: bool = False, dtype=np.float32):
        super().__init__(None, num_features, eps, momentum, affine, track_running_stats, dtype=dtype)

    def _check_input_dim(self, x):
        if x.ndim != 2 + self.spatial_dims:
            raise ValueError(f"expected input of shape (N, {self.num_features}{', ...' * self.spatial_dims}), "
                             f"got {x.shape}")
        if self.training and x.ndim > 2 and x.size and x.size // (x.shape[0] * x.shape[1]) == 1:
            raise ValueError(f"Expected more than 1 spatial element when training, got input size {x.shape}")


class InstanceNorm1d(_InstanceNorm):
    """Instance norm over (N, C, L)."""

    spatial_dims = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance norm over (N, C, H, W)."""

    spatial_dims = 2
