"""The demo's checks of the core: every norm's backward (staged, closed form) against
numeric gradients with random upstream gradients and random gamma/beta, the demo's
model against numeric gradients, and float32 accuracy on data with a large mean
against the textbook formula (``large_mean_case`` is the benchmark's case too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import functional as F
from ..gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, rel_error
from .settings import MODELS


@dataclass
class GradRow:
    layer: str
    backward: str
    shape: tuple[int, ...]
    dx: float
    dgamma: float
    dbeta: float


def _check(layer, backward_name, forward, backward, x, gamma, beta, dout) -> GradRow:
    """Relative errors of ``backward`` against numeric gradients of ``forward``."""
    _, cache = forward(x, gamma, beta)
    dx, dgamma, dbeta = backward(dout, cache)
    num_dx = eval_numerical_gradient_array(lambda a: forward(a, gamma, beta)[0], x, dout)
    num_dgamma = eval_numerical_gradient_array(lambda a: forward(x, a, beta)[0], gamma, dout)
    num_dbeta = eval_numerical_gradient_array(lambda a: forward(x, gamma, a)[0], beta, dout)
    return GradRow(layer, backward_name, x.shape, rel_error(dx, num_dx),
                   rel_error(dgamma, num_dgamma), rel_error(dbeta, num_dbeta))


def gradient_rows(seed: int = 0) -> list[GradRow]:
    """Numeric gradient checks of every norm in float64, inputs with mean 3, std 2."""
    rng = np.random.default_rng(seed)

    def data(*shape):
        return rng.normal(3.0, 2.0, shape)

    def params(*shape):
        return rng.normal(1.0, 0.5, shape), rng.normal(0.0, 0.5, shape)

    rows = []
    x, dout = data(8, 5), rng.normal(size=(8, 5))
    gamma, beta = params(5)

    def bn(a, g, b):
        return F.batchnorm_forward(a, g, b, {"mode": "train"})

    rows.append(_check("batchnorm", "staged", bn, F.batchnorm_backward, x, gamma, beta, dout))
    rows.append(_check("batchnorm", "closed form", bn, F.batchnorm_backward_alt, x, gamma, beta, dout))

    def ln(a, g, b):
        return F.layernorm_forward(a, g, b, {})

    rows.append(_check("layernorm", "closed form", ln, F.layernorm_backward, x, gamma, beta, dout))

    x4, dout4 = data(3, 4, 3, 3), rng.normal(size=(3, 4, 3, 3))
    gamma4, beta4 = params(4)

    def sbn(a, g, b):
        return F.spatial_batchnorm_forward(a, g, b, {"mode": "train"})

    rows.append(_check("spatial batchnorm", "closed form", sbn, F.spatial_batchnorm_backward,
                       x4, gamma4, beta4, dout4))
    gammag, betag = params(1, 4, 1, 1)

    def gn(a, g, b):
        return F.spatial_groupnorm_forward(a, g, b, 2, {})

    rows.append(_check("groupnorm (G=2)", "closed form", gn, F.spatial_groupnorm_backward,
                       x4, gammag, betag, dout4))
    return rows


def _worst_errors(model, X, y, norm) -> dict[str, float]:
    """The largest relative error of the analytic gradient per parameter kind (W, b, gamma, beta)."""
    _, grads = model.loss(X, y)
    worst: dict[str, float] = {}
    for name, value in model.params.items():
        numeric = eval_numerical_gradient(lambda _: model.loss(X, y)[0], value, h=1e-4, order=4)
        kind = name.rstrip("0123456789")
        if norm == "batchnorm" and kind == "b" and f"gamma{name[1:]}" in model.params:
            err = max(float(np.abs(grads[name]).max()), float(np.abs(numeric).max()))
            kind = "b (into BN: |grad|)"
        else:
            err = rel_error(grads[name], numeric)
        worst[kind] = max(worst.get(kind, 0.0), err)
    return worst


def model_gradient_checks(seed: int) -> list[dict]:
    """Numeric gradient check of the demo's architecture, small and in float64.

    One row per (model, parameter kind): the largest relative error over the
    layers, with CS231n's bounds (weights < 1e-4; biases, gamma, beta < 1e-7). A
    bias feeding a batch norm has gradient 0 (the norm removes it): both sides are
    checked to be round-off and reported as such.
    """
    from ..classifiers import FullyConnectedNet

    rng = np.random.default_rng(seed)
    X, y = rng.normal(0.5, 1.0, (6, 5)), rng.integers(4, size=6)
    rows = []
    for label, norm in MODELS:
        for reg in (0.0, 0.5):
            model = FullyConnectedNet([7, 6, 5], input_dim=5, num_classes=4, normalization=norm, reg=reg,
                                      weight_scale=0.5, dtype=np.float64, rng=seed)
            for name in model.params:
                if name.startswith(("gamma", "beta")):
                    model.params[name] = rng.normal(1.0 if name.startswith("gamma") else 0.0, 0.5,
                                                    model.params[name].shape)
            for kind, err in _worst_errors(model, X, y, norm).items():
                bound = 1e-4 if kind == "W" else 1e-7
                rows.append({"model": label, "reg": reg, "param": kind, "error": err, "ok": err < bound,
                             "bound": bound})
    return rows


def large_mean_case(n: int, d: int, mean: float = 1e4, seed: int = 0):
    """float32 data x (n, d) = mean + N(0, 1), gamma ones, beta zeros (float32), and
    the float64 reference output of training-mode batch norm on x."""
    rng = np.random.default_rng(seed)
    x32 = (mean + rng.standard_normal((n, d))).astype(np.float32)
    gamma, beta = np.ones(d, np.float32), np.zeros(d, np.float32)
    x64 = x32.astype(np.float64)
    return x32, gamma, beta, (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)


def large_mean_errors(n: int = 65536, d: int = 64, mean: float = 1e4, seed: int = 0) -> dict[str, float]:
    """Max |out - float64 reference| for float32 data with a large mean, std 1.

    Compares normgrad's float32 batch norm with the textbook one-pass float32
    formula var = E[x^2] - E[x]^2 that this package never uses.
    """
    x32, gamma, beta, ref = large_mean_case(n, d, mean, seed)
    out, _ = F.batchnorm_forward(x32, gamma, beta, {"mode": "train"})
    mu = x32.mean(0, dtype=np.float32)
    var_naive = np.maximum((x32 * x32).mean(0, dtype=np.float32) - mu * mu, 0)
    naive = (x32 - mu) / np.sqrt(var_naive + np.float32(1e-5))
    return {"normgrad": float(np.abs(out - ref).max()), "naive E[x^2]-E[x]^2": float(np.abs(naive - ref).max())}
