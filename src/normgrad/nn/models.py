"""CS231n-style models: a fully-connected net and a small conv net, with normalization.

Parameters live in ``model.params`` under CS231n names (W1, b1, gamma1, beta1, ...)
so the Solver (and a student's code) can update them; ``loss(X, y=None)`` returns
scores at test time, (loss, grads) in training. Normalization layers run on the
fused kernels; running statistics follow the CS231n convention of
``normgrad.functional`` (running = momentum * running + (1 - momentum) * batch).
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..functional import _validate as v
from ..functional import layers as L

NORMALIZATIONS = (None, "batchnorm", "layernorm")


def _inputs(X, dtype) -> np.ndarray:
    """X as the model's dtype; NaN/Inf and non-numeric input refused by name."""
    X = np.asarray(X)
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise TypeError(f"X must be numeric, got dtype {X.dtype}")
    X = X.astype(dtype, copy=False)
    v.finite("X", X)
    return X


def _norm_forward(kind, a, gamma, beta, param, mode, G=1):
    """Normalize a (N, C) or (N, C, H, W) with the fused kernels; returns (out, cache)."""
    eps = param.get("eps", 1e-5)
    if kind == "layernorm":
        out, mean, invstd = kernels.layernorm_forward(a, gamma, beta, eps=eps)
        return out, (kind, a, gamma, mean, invstd, True)
    if kind == "groupnorm":
        out, mean, invstd = kernels.groupnorm_forward(a, gamma, beta, G, eps=eps)
        return out, (kind, a, gamma, mean, invstd, G)
    C = a.shape[1]
    running_mean = param.get("running_mean", np.zeros(C, a.dtype))
    running_var = param.get("running_var", np.ones(C, a.dtype))
    if mode == "train":
        out, mean, invstd = kernels.batchnorm_forward(a, gamma, beta, training=True, eps=eps)
        momentum = param.get("momentum", 0.9)
        var = 1.0 / invstd**2 - eps
        param["running_mean"] = (momentum * running_mean + (1 - momentum) * mean).astype(a.dtype)
        param["running_var"] = (momentum * running_var + (1 - momentum) * var).astype(a.dtype)
    else:
        out, mean, invstd = kernels.batchnorm_forward(a, gamma, beta, training=False, eps=eps,
                                                      running_mean=running_mean, running_var=running_var)
    return out, (kind, a, gamma, mean, invstd, mode == "train")


def _norm_backward(dout, cache):
    kind, a, gamma, mean, invstd, extra = cache
    if kind == "layernorm":
        dx, dgamma, dbeta = kernels.layernorm_backward(dout, a, gamma, mean, invstd)
    elif kind == "groupnorm":
        dx, dgamma, dbeta = kernels.groupnorm_backward(dout, a, gamma, extra, mean, invstd)
    else:
        dx, dgamma, dbeta = kernels.batchnorm_backward(dout, a, gamma, mean, invstd, training=extra)
    return dx, dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype)


class FullyConnectedNet:
    """{affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax.

    - hidden_dims: sizes of the hidden layers
    - input_dim, num_classes: D and C
    - dropout_keep_ratio: keep probability; 1 means no dropout
    - normalization: None, 'batchnorm' or 'layernorm'
    - reg: L2 strength (loss += 0.5 * reg * sum W**2)
    - weight_scale: std of the initial weights (biases 0, gamma 1, beta 0)
    - dtype: float32 for speed, float64 for gradient checks
    - seed: for the weights and for dropout
    """

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout_keep_ratio=1,
                 normalization=None, reg=0.0, weight_scale=1e-2, dtype=np.float32, seed=None):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if not 0 < dropout_keep_ratio <= 1:
            raise ValueError(f"dropout_keep_ratio must lie in (0, 1], got {dropout_keep_ratio}")
        self.normalization = normalization
        self.use_dropout = dropout_keep_ratio != 1
        self.reg = reg
        self.num_layers = 1 + len(hidden_dims)
        self.dtype = np.dtype(dtype)
        self.params: dict[str, np.ndarray] = {}
        rng = np.random.default_rng(seed)
        dims = [input_dim, *hidden_dims, num_classes]
        for i in range(self.num_layers):
            self.params[f"W{i + 1}"] = weight_scale * rng.standard_normal((dims[i], dims[i + 1]))
            self.params[f"b{i + 1}"] = np.zeros(dims[i + 1])
            if normalization and i < self.num_layers - 1:
                self.params[f"gamma{i + 1}"] = np.ones(dims[i + 1])
                self.params[f"beta{i + 1}"] = np.zeros(dims[i + 1])
        # A "seed" put in dropout_param fixes the mask for every forward (as CS231n
        # does, for gradient checks); otherwise each forward draws a new mask from
        # the model's own generator, seeded by ``seed``.
        self.dropout_param = {"mode": "train", "p": dropout_keep_ratio}
        self.rng = np.random.default_rng(None if seed is None else seed + 1)
        self.bn_params = [{"mode": "train"} for _ in range(self.num_layers - 1)] if normalization else []
        for k, value in self.params.items():
            self.params[k] = value.astype(self.dtype)
        self.record_activations = False
        self.activations: list[np.ndarray] = []  # per hidden layer, before the relu, when recorded

    def loss(self, X, y=None):
        """Scores (N, C) when y is None (test mode); else (loss, grads) with grads like params."""
        X = _inputs(X, self.dtype)
        mode = "test" if y is None else "train"
        self.dropout_param["mode"] = mode
        for p in self.bn_params:
            p["mode"] = mode
        caches = []
        self.activations = []
        h = X
        for i in range(1, self.num_layers):
            a, fc_cache = L.affine_forward(h, self.params[f"W{i}"], self.params[f"b{i}"])
            norm_cache = None
            if self.normalization:
                a, norm_cache = _norm_forward(self.normalization, a, self.params[f"gamma{i}"],
                                              self.params[f"beta{i}"], self.bn_params[i - 1], mode)
            if self.record_activations:
                self.activations.append(a.copy())
            h, relu_cache = L.relu_forward(a)
            drop_cache = None
            if self.use_dropout:
                param = self.dropout_param
                if mode == "train" and "seed" not in param:
                    param = dict(param, seed=int(self.rng.integers(2**63)))
                h, drop_cache = L.dropout_forward(h, param)
            caches.append((fc_cache, norm_cache, relu_cache, drop_cache))
        scores, last_cache = L.affine_forward(h, self.params[f"W{self.num_layers}"], self.params[f"b{self.num_layers}"])
        if y is None:
            return scores

        loss, dscores = L.softmax_loss(scores, y)
        grads = {}
        W = [self.params[f"W{i}"] for i in range(1, self.num_layers + 1)]
        loss += 0.5 * self.reg * sum(float(np.sum(w * w)) for w in W)
        dh, dw, db = L.affine_backward(dscores, last_cache)
        n = self.num_layers
        grads[f"W{n}"], grads[f"b{n}"] = dw + self.reg * W[-1], db
        for i in range(n - 1, 0, -1):
            fc_cache, norm_cache, relu_cache, drop_cache = caches[i - 1]
            if drop_cache is not None:
                dh = L.dropout_backward(dh, drop_cache)
            da = L.relu_backward(dh, relu_cache)
            if norm_cache is not None:
                da, grads[f"gamma{i}"], grads[f"beta{i}"] = _norm_backward(da, norm_cache)
            dh, dw, db = L.affine_backward(da, fc_cache)
            grads[f"W{i}"], grads[f"b{i}"] = dw + self.reg * W[i - 1], db
        return loss, grads


class ConvNet:
    """[conv3x3 - spatial batch/group norm - relu - 2x2 max pool] x len(num_filters) - affine - softmax.

    - input_dim: (C, H, W); H and W must halve len(num_filters) times
    - normalization: 'batchnorm', 'groupnorm' (with G groups) or None
    """

    def __init__(self, input_dim=(1, 8, 8), num_filters=(16, 32), num_classes=10, normalization="batchnorm",
                 G=4, reg=0.0, weight_scale=None, dtype=np.float32, seed=None):
        if normalization not in (None, "batchnorm", "groupnorm"):
            raise ValueError(f"normalization must be None, 'batchnorm' or 'groupnorm', got {normalization!r}")
        C, H, W = input_dim
        if H % 2 ** len(num_filters) or W % 2 ** len(num_filters):
            raise ValueError(f"input {H}x{W} cannot be halved {len(num_filters)} times")
        self.normalization, self.G, self.reg, self.dtype = normalization, G, reg, np.dtype(dtype)
        rng = np.random.default_rng(seed)
        self.params: dict[str, np.ndarray] = {}
        self.n_conv = len(num_filters)
        prev = C
        for i, F in enumerate(num_filters, start=1):
            scale = weight_scale or np.sqrt(2.0 / (prev * 9))
            self.params[f"W{i}"] = scale * rng.standard_normal((F, prev, 3, 3))
            self.params[f"b{i}"] = np.zeros(F)
            if normalization:
                if normalization == "groupnorm" and F % G:
                    raise ValueError(f"G={G} must divide every filter count, got {F}")
                self.params[f"gamma{i}"], self.params[f"beta{i}"] = np.ones(F), np.zeros(F)
            prev = F
        flat = prev * (H // 2 ** self.n_conv) * (W // 2 ** self.n_conv)
        k = self.n_conv + 1
        self.params[f"W{k}"] = (weight_scale or np.sqrt(2.0 / flat)) * rng.standard_normal((flat, num_classes))
        self.params[f"b{k}"] = np.zeros(num_classes)
        for key, value in self.params.items():
            self.params[key] = value.astype(self.dtype)
        self.bn_params = [{"mode": "train"} for _ in range(self.n_conv)]

    def loss(self, X, y=None):
        """Scores (N, classes) when y is None (test mode); else (loss, grads) with grads like params."""
        X = _inputs(X, self.dtype)
        mode = "test" if y is None else "train"
        conv_param, pool_param = {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2}
        caches, h = [], X
        for i in range(1, self.n_conv + 1):
            a, conv_cache = L.conv_forward(h, self.params[f"W{i}"], self.params[f"b{i}"], conv_param)
            norm_cache = None
            if self.normalization:
                a, norm_cache = _norm_forward(self.normalization, a, self.params[f"gamma{i}"],
                                              self.params[f"beta{i}"], self.bn_params[i - 1], mode, self.G)
            r, relu_cache = L.relu_forward(a)
            h, pool_cache = L.max_pool_forward(r, pool_param)
            caches.append((conv_cache, norm_cache, relu_cache, pool_cache))
        k = self.n_conv + 1
        scores, fc_cache = L.affine_forward(h, self.params[f"W{k}"], self.params[f"b{k}"])
        if y is None:
            return scores
        loss, dscores = L.softmax_loss(scores, y)
        weights = [self.params[f"W{i}"] for i in range(1, k + 1)]
        loss += 0.5 * self.reg * sum(float(np.sum(w * w)) for w in weights)
        grads = {}
        dh, dw, db = L.affine_backward(dscores, fc_cache)
        grads[f"W{k}"], grads[f"b{k}"] = dw + self.reg * weights[-1], db
        for i in range(self.n_conv, 0, -1):
            conv_cache, norm_cache, relu_cache, pool_cache = caches[i - 1]
            da = L.relu_backward(L.max_pool_backward(dh, pool_cache), relu_cache)
            if norm_cache is not None:
                da, grads[f"gamma{i}"], grads[f"beta{i}"] = _norm_backward(da, norm_cache)
            dh, dw, db = L.conv_backward(da, conv_cache)
            grads[f"W{i}"], grads[f"b{i}"] = dw + self.reg * weights[i - 1], db
        return loss, grads
