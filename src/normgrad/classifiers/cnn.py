"""A small conv net with spatial batch or group norm (CS231n's ``cnn``)."""

from __future__ import annotations

import numpy as np

from ..functional import layers as L
from ._base import Classifier, norm_backward, norm_forward


class ConvNet(Classifier):
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
        X = self._inputs(X)
        mode = "test" if y is None else "train"
        conv_param, pool_param = {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2}
        caches, h = [], X
        for i in range(1, self.n_conv + 1):
            a, conv_cache = L.conv_forward(h, self.params[f"W{i}"], self.params[f"b{i}"], conv_param)
            norm_cache = None
            if self.normalization:
                a, norm_cache = norm_forward(self.normalization, a, self.params[f"gamma{i}"],
                                             self.params[f"beta{i}"], self.bn_params[i - 1], mode, self.G)
            r, relu_cache = L.relu_forward(a)
            h, pool_cache = L.max_pool_forward(r, pool_param)
            caches.append((conv_cache, norm_cache, relu_cache, pool_cache))
        k = self.n_conv + 1
        scores, fc_cache = L.affine_forward(h, self.params[f"W{k}"], self.params[f"b{k}"])
        if y is None:
            return scores
        loss, grads, dh = self._head(scores, y, fc_cache, k)
        for i in range(self.n_conv, 0, -1):
            conv_cache, norm_cache, relu_cache, pool_cache = caches[i - 1]
            da = L.relu_backward(L.max_pool_backward(dh, pool_cache), relu_cache)
            if norm_cache is not None:
                da, grads[f"gamma{i}"], grads[f"beta{i}"] = norm_backward(da, norm_cache)
            dh, dw, grads[f"b{i}"] = L.conv_backward(da, conv_cache)
            grads[f"W{i}"] = dw + self.reg * self.params[f"W{i}"]
        return loss, grads
