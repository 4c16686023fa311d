"""A fully-connected net of any depth with optional batch/layer norm and dropout (CS231n's ``fc_net``)."""

from __future__ import annotations

import numpy as np

from ..functional import layers as L
from ._base import Classifier, gaussian, generators, norm_layer_backward, norm_layer_forward

NORMALIZATIONS = (None, "batchnorm", "layernorm")


class FullyConnectedNet(Classifier):
    """{affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax.

    - hidden_dims: sizes of the hidden layers
    - input_dim, num_classes: D and C
    - dropout_keep_ratio: keep probability; 1 means no dropout
    - normalization: None, 'batchnorm' or 'layernorm'
    - reg: L2 strength (loss += 0.5 * reg * sum W**2)
    - weight_scale: std of the initial weights (biases 0, gamma 1, beta 0)
    - dtype: float32 for speed, float64 for gradient checks
    - seed: as in the course, fixes the dropout mask (``dropout_param['seed']``): the
      same mask on every forward, for gradient checks
    - rng: normgrad's own: an int seed or a Generator for the initial weights and the
      dropout masks; None (the course's way) draws them from NumPy's global generator
    """

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout_keep_ratio=1,
                 normalization=None, reg=0.0, weight_scale=1e-2, dtype=np.float32, seed=None, rng=None):
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
        weights, self.rng = generators(rng)
        dims = [input_dim, *hidden_dims, num_classes]
        for i in range(self.num_layers):
            self.params[f"W{i + 1}"] = gaussian(weights, (dims[i], dims[i + 1]), weight_scale)
            self.params[f"b{i + 1}"] = np.zeros(dims[i + 1])
            if normalization and i < self.num_layers - 1:
                self.params[f"gamma{i + 1}"] = np.ones(dims[i + 1])
                self.params[f"beta{i + 1}"] = np.zeros(dims[i + 1])
        # A "seed" in dropout_param fixes the mask for every forward (as CS231n does, for
        # gradient checks); otherwise each forward draws a new mask, from ``rng`` if given.
        self.dropout_param = {"mode": "train", "p": dropout_keep_ratio}
        if seed is not None:
            self.dropout_param["seed"] = seed
        self.bn_params = [{"mode": "train"} for _ in range(self.num_layers - 1)] if normalization else []
        for k, value in self.params.items():
            self.params[k] = value.astype(self.dtype)
        self.record_activations = False
        self.activations: list[np.ndarray] = []  # per hidden layer, before the relu, when recorded

    def architecture(self) -> dict:
        """Class, layer sizes, normalization and dtype (see ``Classifier.architecture``)."""
        dims = [self.params[f"W{i}"].shape[1] for i in range(1, self.num_layers + 1)]
        return {"class": type(self).__name__, "input_dim": self.params["W1"].shape[0], "hidden_dims": dims[:-1],
                "num_classes": dims[-1], "normalization": self.normalization, "dtype": str(self.dtype)}

    def loss(self, X, y=None):
        """Scores (N, C) when y is None (test mode); else (loss, grads) with grads like params."""
        X = self._inputs(X)
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
                a, norm_cache = norm_layer_forward(self.normalization, a, self.params[f"gamma{i}"],
                                             self.params[f"beta{i}"], self.bn_params[i - 1], mode)
            if self.record_activations:
                self.activations.append(a.copy())
            h, relu_cache = L.relu_forward(a)
            drop_cache = None
            if self.use_dropout:
                param = self.dropout_param
                if mode == "train" and "seed" not in param and self.rng is not None:
                    param = dict(param, generator=self.rng)
                h, drop_cache = L.dropout_forward(h, param)
            caches.append((fc_cache, norm_cache, relu_cache, drop_cache))
        n = self.num_layers
        scores, last_cache = L.affine_forward(h, self.params[f"W{n}"], self.params[f"b{n}"])
        if y is None:
            return scores

        loss, grads, dh = self._head(scores, y, last_cache, n)
        for i in range(n - 1, 0, -1):
            fc_cache, norm_cache, relu_cache, drop_cache = caches[i - 1]
            if drop_cache is not None:
                dh = L.dropout_backward(dh, drop_cache)
            da = L.relu_backward(dh, relu_cache)
            if norm_cache is not None:
                da, grads[f"gamma{i}"], grads[f"beta{i}"] = norm_layer_backward(da, norm_cache)
            dh, dw, grads[f"b{i}"] = L.affine_backward(da, fc_cache)
            grads[f"W{i}"] = dw + self.reg * self.params[f"W{i}"]
        return loss, grads
