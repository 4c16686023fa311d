"""A small conv net with spatial batch or group norm (CS231n's ``cnn``)."""

from __future__ import annotations

import numpy as np

from ..functional import layers as L
from ._base import Classifier, gaussian, generators, norm_layer_backward, norm_layer_forward


CONV_NORMALIZATIONS = (None, "batchnorm", "groupnorm", "layernorm", "instancenorm")


class ConvNet(Classifier):
    """[conv3x3 - norm - relu - 2x2 max pool] x len(num_filters) - affine - softmax.

    - input_dim: (C, H, W); H and W must halve len(num_filters) times
    - normalization: 'batchnorm' (spatial), 'groupnorm' (with G groups), 'layernorm'
      (over (C, H, W) per example: group norm with one group), 'instancenorm' (per
      example and channel) or None
    - weight_scale: std of the initial weights (None: He, sqrt(2 / fan_in))
    - rng: an int seed or a Generator for the initial weights; None: NumPy's global generator
    """

    def __init__(self, input_dim=(1, 8, 8), num_filters=(16, 32), num_classes=10, normalization="batchnorm",
                 G=4, reg=0.0, weight_scale=None, dtype=np.float32, rng=None):
        if normalization not in CONV_NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {CONV_NORMALIZATIONS}, got {normalization!r}")
        C, H, W = input_dim
        self.input_dim, self.num_filters, self.num_classes = (C, H, W), list(num_filters), num_classes
        if H % 2 ** len(num_filters) or W % 2 ** len(num_filters):
            raise ValueError(f"input {H}x{W} cannot be halved {len(num_filters)} times")
        self.normalization, self.G, self.reg, self.dtype = normalization, G, reg, np.dtype(dtype)
        # layer norm over (C, H, W) is group norm with a single group
        self._norm_kind, self._norm_groups = ("groupnorm", 1) if normalization == "layernorm" else (normalization, G)
        weights, _ = generators(rng)
        self.params: dict[str, np.ndarray] = {}
        self.n_conv = len(num_filters)
        prev = C
        for i, F in enumerate(num_filters, start=1):
            scale = weight_scale or np.sqrt(2.0 / (prev * 9))
            self.params[f"W{i}"] = gaussian(weights, (F, prev, 3, 3), scale)
            self.params[f"b{i}"] = np.zeros(F)
            if normalization:
                if normalization == "groupnorm" and F % G:
                    raise ValueError(f"G={G} must divide every filter count, got {F}")
                self.params[f"gamma{i}"], self.params[f"beta{i}"] = np.ones(F), np.zeros(F)
            prev = F
        flat = prev * (H // 2 ** self.n_conv) * (W // 2 ** self.n_conv)
        k = self.n_conv + 1
        self.params[f"W{k}"] = gaussian(weights, (flat, num_classes), weight_scale or np.sqrt(2.0 / flat))
        self.params[f"b{k}"] = np.zeros(num_classes)
        for key, value in self.params.items():
            self.params[key] = value.astype(self.dtype)
        self.bn_params = [{"mode": "train"} for _ in range(self.n_conv)]

    def architecture(self) -> dict:
        """Class, layer sizes, normalization (and G) and dtype (see ``Classifier.architecture``)."""
        return {"class": type(self).__name__, "input_dim": list(self.input_dim), "num_filters": self.num_filters,
                "num_classes": self.num_classes, "normalization": self.normalization,
                "G": self.G if self.normalization == "groupnorm" else None, "dtype": str(self.dtype)}

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
                a, norm_cache = norm_layer_forward(self._norm_kind, a, self.params[f"gamma{i}"],
                                             self.params[f"beta{i}"], self.bn_params[i - 1], mode,
                                             self._norm_groups)
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
                da, grads[f"gamma{i}"], grads[f"beta{i}"] = norm_layer_backward(da, norm_cache)
            dh, dw, grads[f"b{i}"] = L.conv_backward(da, conv_cache)
            grads[f"W{i}"] = dw + self.reg * self.params[f"W{i}"]
        return loss, grads


class ThreeLayerConvNet(Classifier):
    """conv - relu - 2x2 max pool - affine - relu - affine - softmax (CS231n's ``cnn``).

    - input_dim: (C, H, W); num_filters, filter_size: the conv layer (stride 1, padded
      to keep H and W); hidden_dim: the hidden affine layer
    - weight_scale: std of the initial weights (biases 0), drawn in the order W1, W2, W3
    - rng: an int seed or a Generator for them; None: NumPy's global generator, as the course
    """

    def __init__(self, input_dim=(3, 32, 32), num_filters=32, filter_size=7, hidden_dim=100, num_classes=10,
                 weight_scale=1e-3, reg=0.0, dtype=np.float32, rng=None):
        C, H, W = input_dim
        self.input_dim = (C, H, W)
        if H % 2 or W % 2 or filter_size % 2 == 0:
            raise ValueError(f"need an even H, W and an odd filter_size, got {input_dim} and {filter_size}")
        self.reg, self.dtype, self.bn_params = reg, np.dtype(dtype), []
        weights, _ = generators(rng)
        shapes = {"W1": (num_filters, C, filter_size, filter_size), "b1": (num_filters,),
                  "W2": (num_filters * (H // 2) * (W // 2), hidden_dim), "b2": (hidden_dim,),
                  "W3": (hidden_dim, num_classes), "b3": (num_classes,)}
        self.params = {name: (gaussian(weights, shape, weight_scale) if name[0] == "W" else np.zeros(shape))
                       .astype(self.dtype) for name, shape in shapes.items()}

    def architecture(self) -> dict:
        """Class, layer sizes and dtype (see ``Classifier.architecture``); no normalization."""
        F, _, size, _ = self.params["W1"].shape
        return {"class": type(self).__name__, "input_dim": list(self.input_dim), "num_filters": F,
                "filter_size": size, "hidden_dim": self.params["W2"].shape[1],
                "num_classes": self.params["W3"].shape[1], "normalization": None, "dtype": str(self.dtype)}

    def loss(self, X, y=None):
        """Scores (N, classes) when y is None; else (loss, grads) with grads like params."""
        X = self._inputs(X)
        p = self.params
        conv_param = {"stride": 1, "pad": (p["W1"].shape[2] - 1) // 2}
        pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
        h1, cache1 = L.conv_relu_pool_forward(X, p["W1"], p["b1"], conv_param, pool_param)
        h2, cache2 = L.affine_relu_forward(h1, p["W2"], p["b2"])
        scores, cache3 = L.affine_forward(h2, p["W3"], p["b3"])
        if y is None:
            return scores
        loss, grads, dh2 = self._head(scores, y, cache3, 3)
        dh1, dw, grads["b2"] = L.affine_relu_backward(dh2, cache2)
        grads["W2"] = dw + self.reg * p["W2"]
        _, dw, grads["b1"] = L.conv_relu_pool_backward(dh1, cache1)
        grads["W1"] = dw + self.reg * p["W1"]
        return loss, grads
