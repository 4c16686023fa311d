"""Linear, ReLU, Dropout, Conv2d, MaxPool2d and Sequential, PyTorch conventions.

Weights are laid out as PyTorch lays them out (Linear weight (out, in), Conv2d
weight (out, in, kh, kw)) and initialised as PyTorch does by default (uniform in
±1/sqrt(fan_in)), from a ``seed``; state dicts use PyTorch's keys. The math is
``normgrad.functional.layers``.
"""

from __future__ import annotations

from collections import OrderedDict
from numbers import Integral

import numpy as np

from ..core import validate as v
from ..functional import layers as L
from .module import Module


def _pair(name: str, value) -> tuple[int, int]:
    if isinstance(value, Integral):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return v.positive_integer(name, value[0]), v.positive_integer(name, value[1])


def _uniform_init(rng, fan_in: int, shape, dtype) -> np.ndarray:
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape).astype(dtype)


class Linear(Module):
    """y = x @ weight.T + bias. x: (N, in_features) -> y: (N, out_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32, seed=None):
        super().__init__()
        self.in_features = v.positive_integer("in_features", in_features)
        self.out_features = v.positive_integer("out_features", out_features)
        rng = np.random.default_rng(seed)
        self.params["weight"] = _uniform_init(rng, self.in_features, (self.out_features, self.in_features), dtype)
        if bias:
            self.params["bias"] = _uniform_init(rng, self.in_features, (self.out_features,), dtype)
        self._cache = None

    def forward(self, x):
        x = v.float_array("x", x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected input of shape (N, {self.in_features}), got {x.shape}")
        w = self.params["weight"]
        b = self.params.get("bias", np.zeros(self.out_features, w.dtype))
        out, self._cache = L.affine_forward(x, w.T, b)
        return out

    def backward(self, dout):
        if self._cache is None:
            raise RuntimeError("Linear.backward called before forward")
        dx, dw, db = L.affine_backward(dout, self._cache)
        self.grads["weight"] = dw.T.astype(self.params["weight"].dtype)
        if "bias" in self.params:
            self.grads["bias"] = db.astype(self.params["bias"].dtype)
        return dx


class ReLU(Module):
    """max(x, 0), elementwise; x of any shape, out and dx of x's shape."""

    def forward(self, x):
        out, self._cache = L.relu_forward(x)
        return out

    def backward(self, dout):
        return L.relu_backward(dout, self._cache)


class Dropout(Module):
    """Inverted dropout, x of any shape (out of x's shape). PyTorch convention: ``p`` is the
    probability of *dropping* a unit (CS231n's ``dropout_param['p']`` is the keep
    probability; this module converts)."""

    def __init__(self, p: float = 0.5, seed=None):
        super().__init__()
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
        self.p = p
        self.rng = np.random.default_rng(seed)
        self._cache = None

    def forward(self, x):
        param = {"p": 1.0 - self.p, "mode": "train" if self.training else "test", "generator": self.rng}
        out, self._cache = L.dropout_forward(x, param)
        return out

    def backward(self, dout):
        return L.dropout_backward(dout, self._cache)


class Conv2d(Module):
    """2-D cross-correlation. x: (N, in_channels, H, W) -> (N, out_channels, H', W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: int = 1, padding: int = 0,
                 bias: bool = True, dtype=np.float32, seed=None):
        super().__init__()
        self.in_channels = v.positive_integer("in_channels", in_channels)
        self.out_channels = v.positive_integer("out_channels", out_channels)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = v.positive_integer("stride", stride)
        if isinstance(padding, bool) or not isinstance(padding, Integral) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        self.padding = int(padding)
        rng = np.random.default_rng(seed)
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.params["weight"] = _uniform_init(rng, fan_in, (self.out_channels, self.in_channels, *self.kernel_size),
                                              dtype)
        if bias:
            self.params["bias"] = _uniform_init(rng, fan_in, (self.out_channels,), dtype)
        self._cache = None

    def forward(self, x):
        w = self.params["weight"]
        b = self.params.get("bias", np.zeros(self.out_channels, w.dtype))
        out, self._cache = L.conv_forward(x, w, b, {"stride": self.stride, "pad": self.padding})
        return out

    def backward(self, dout):
        if self._cache is None:
            raise RuntimeError("Conv2d.backward called before forward")
        dx, dw, db = L.conv_backward(dout, self._cache)
        self.grads["weight"] = dw.astype(self.params["weight"].dtype)
        if "bias" in self.params:
            self.grads["bias"] = db.astype(self.params["bias"].dtype)
        return dx


class MaxPool2d(Module):
    """Max pooling over kernel_size windows (stride defaults to kernel_size).
    x: (N, C, H, W), the windows tiling H and W exactly; out: (N, C, H', W') with
    H' = (H - kh) // stride + 1, W' likewise."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = self.kernel_size[0] if stride is None else v.positive_integer("stride", stride)

    def forward(self, x):
        kh, kw = self.kernel_size
        out, self._cache = L.max_pool_forward(x, {"pool_height": kh, "pool_width": kw, "stride": self.stride})
        return out

    def backward(self, dout):
        return L.max_pool_backward(dout, self._cache)


class Flatten(Module):
    """(N, ...) -> (N, prod(...))."""

    def forward(self, x):
        x = v.float_array("x", x)
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return np.asarray(dout).reshape(self._shape)


class Sequential(Module):
    """Modules applied in order; children are named "0", "1", ... as in PyTorch."""

    def __init__(self, *modules: Module):
        super().__init__()
        for m in modules:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential takes Modules, got {type(m).__name__}")
        self.layers = list(modules)

    def children(self) -> dict[str, Module]:
        return OrderedDict((str(i), m) for i, m in enumerate(self.layers))

    def __getitem__(self, i) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def forward(self, x):
        for m in self.layers:
            x = m.forward(x)
        return x

    def backward(self, dout):
        for m in reversed(self.layers):
            dout = m.backward(dout)
        return dout
