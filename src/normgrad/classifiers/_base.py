"""What the CS231n classifiers share: input checks, L2 regularization, their
normalization layers on the fused kernels, and the state a checkpoint keeps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..core import running
from ..core import validate as v
from ..core.specs import BATCH, GROUP, INSTANCE, LAYER, NormSpec
from ..core.stats import NormStats
from ..functional import layers as L

SPECS = {"batchnorm": BATCH, "layernorm": LAYER, "groupnorm": GROUP, "instancenorm": INSTANCE}


def norm_layer_forward(kind: str, a: np.ndarray, gamma, beta, param: dict, mode: str, G: int | None = None):
    """One normalization layer with CS231n's conventions, on the fused kernels.

    - a: (N, D) or (N, C, H, W); gamma, beta: (C,)
    - param: the layer's bn_param; for a norm with running statistics its
      running_mean / running_var (``core.running.read_cs231n``) are replaced by new
      arrays in train mode and used in test mode
    Returns (out, cache), cache a ``LayerCache``.
    """
    spec = SPECS[kind]
    eps = v.eps_value(param.get("eps", 1e-5), a.dtype)
    old = running.read_cs231n(param, spec.channels(a.shape), a.dtype) if spec.running_stats else None
    fixed = old if spec.running_stats and mode == "test" else None
    momentum = v.momentum_value(param.get("momentum", 0.9)) if spec.running_stats else None
    out, stats = kernels.norm_forward(spec, a, gamma, beta, G=G, eps=eps, running=fixed)
    if spec.running_stats and mode == "train":
        batch = running.batch_moments(running.CS231N, stats.mean, stats.var, a.size // a.shape[1], spec.across,
                                      spec.centered)
        running.write_cs231n(param, old, *batch, momentum, a.dtype)
    return out, LayerCache(spec, a, gamma, stats, G, fixed is None)


@dataclass(frozen=True)
class LayerCache:
    """What ``norm_layer_backward`` needs of one normalization layer's forward."""

    spec: NormSpec
    x: np.ndarray
    gamma: np.ndarray
    stats: NormStats
    groups: int | None
    batch_stats: bool


def norm_layer_backward(dout, cache: LayerCache):
    """(dx, dgamma, dbeta) of ``norm_layer_forward``; dgamma and dbeta in gamma's dtype."""
    dx, dgamma, dbeta = kernels.norm_backward(cache.spec, dout, cache.x, cache.gamma, cache.stats, G=cache.groups,
                                              batch_stats=cache.batch_stats)
    return dx, dgamma.astype(cache.gamma.dtype), dbeta.astype(cache.gamma.dtype)


def generators(rng):
    """(weights, dropout) random sources of a classifier.

    ``rng`` is normgrad's own argument: an int seed (or a Generator) gives the weights
    ``default_rng(rng)`` and the dropout masks ``default_rng(rng + 1)``. None, the course's
    way, draws both from NumPy's global generator, so ``np.random.seed`` reproduces a model
    and its training."""
    if rng is None:
        return None, None
    if isinstance(rng, np.random.Generator):
        return rng, rng
    return np.random.default_rng(rng), np.random.default_rng(rng + 1)


def gaussian(source, shape, scale: float) -> np.ndarray:
    """scale * N(0, 1) of ``shape``: from ``source``, or as the course draws them, np.random.randn."""
    draw = np.random.randn(*shape) if source is None else source.standard_normal(shape)
    return scale * draw


class Classifier:
    """Base of the CS231n classifiers: ``params``, ``bn_params``, ``reg``, ``dtype``, ``rng``
    (the generator of the dropout masks; None: NumPy's global one)."""

    params: dict
    bn_params: list
    reg: float
    dtype: np.dtype
    rng: np.random.Generator | None = None

    def _inputs(self, X) -> np.ndarray:
        """X as the model's dtype; NaN/Inf and non-numeric input refused by name."""
        X = np.asarray(X)
        if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
            raise TypeError(f"X must be numeric, got dtype {X.dtype}")
        X = X.astype(self.dtype, copy=False)
        v.finite("X", X)
        return X

    def _head(self, scores, y, cache, k: int):
        """Softmax loss of ``scores`` plus L2 on W1..Wk, and the gradients of the last
        affine layer (layer k, whose ``cache`` made the scores).
        Returns (loss, grads with W{k} and b{k}, gradient into layer k's input)."""
        loss, dscores = L.softmax_loss(scores, y)
        if self.reg:
            loss += 0.5 * self.reg * sum(float(np.vdot(w, w)) for w in (self.params[f"W{i}"] for i in range(1, k + 1)))
        grads = {}
        dh, dw, grads[f"b{k}"] = L.affine_backward(dscores, cache)
        grads[f"W{k}"] = dw + self.reg * self.params[f"W{k}"]
        return loss, grads, dh

    def architecture(self) -> dict:
        """What a checkpoint of this model must match to be loaded into another: the class,
        the layer sizes, the normalization and the dtype (JSON values). Each net lists its
        own constructor's sizes; this default lists every parameter's shape."""
        return {"class": type(self).__name__, "dtype": str(self.dtype),
                "params": {name: list(w.shape) for name, w in self.params.items()}}

    def state(self) -> dict:
        """What a checkpoint keeps besides ``params``: each layer's bn_param (running
        statistics, mode, eps, momentum) and the random generator's state."""
        return {"bn_params": [dict(p) for p in self.bn_params],
                "rng": None if self.rng is None else self.rng.bit_generator.state}

    def load_state(self, state: dict) -> None:
        """Restore what ``state()`` returned."""
        bn_params = state["bn_params"]
        if len(bn_params) != len(self.bn_params):
            raise ValueError(f"state has {len(bn_params)} normalization layers, this model {len(self.bn_params)}")
        self.bn_params[:] = [dict(p) for p in bn_params]
        if state.get("rng") is not None and self.rng is not None:
            self.rng.bit_generator.state = state["rng"]
