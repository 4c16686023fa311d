"""Batch, layer and group normalization built only from the engine's gates.

Each intermediate carries the name it has in the seeds' computational graph:

    mu = mean(x)  ->  xmu = x - mu  ->  sq = xmu**2  ->  var = mean(sq)
    ->  vareps = var + eps  ->  sqrtvar = sqrt(vareps)  ->  ivar = 1 / sqrtvar
    ->  xhat = xmu * ivar  ->  gammax = gamma * xhat  ->  out = gammax + beta

The three norms differ only in the axes mu and var reduce over (and group norm's
reshape), so one builder serves all of them.
"""

from __future__ import annotations

from .engine import Tensor


def _as_tensor(value, name: str) -> Tensor:
    return value if isinstance(value, Tensor) else Tensor(value, name=name)


def _normalize(x: Tensor, axis, keepdims: bool, eps: float, xhat: str = "xhat") -> Tensor:
    """xhat of x over ``axis``, each gate named as in the seeds' graph."""
    mu = x.mean(axis=axis, keepdims=keepdims).named("mu")
    xmu = (x - mu).named("xmu")
    sq = (xmu**2).named("sq")
    var = sq.mean(axis=axis, keepdims=keepdims).named("var")
    vareps = (var + eps).named("vareps")
    sqrtvar = vareps.sqrt().named("sqrtvar")
    ivar = (1.0 / sqrtvar).named("ivar")
    return (xmu * ivar).named(xhat)


def _scale_shift(xhat: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    gammax = (gamma * xhat).named("gammax")
    return (gammax + beta).named("out")


def batchnorm(x, gamma, beta, eps: float = 1e-5) -> Tensor:
    """Batch norm in train mode from gates. x: (N, D); gamma, beta: (D,). Returns out: (N, D)."""
    x, gamma, beta = _as_tensor(x, "x"), _as_tensor(gamma, "gamma"), _as_tensor(beta, "beta")
    return _scale_shift(_normalize(x, 0, False, eps), gamma, beta)


def layernorm(x, gamma, beta, eps: float = 1e-5) -> Tensor:
    """Layer norm from gates. x: (N, D); gamma, beta: (D,). Returns out: (N, D)."""
    x, gamma, beta = _as_tensor(x, "x"), _as_tensor(gamma, "gamma"), _as_tensor(beta, "beta")
    return _scale_shift(_normalize(x, 1, True, eps), gamma, beta)


def groupnorm(x, gamma, beta, G: int, eps: float = 1e-5) -> Tensor:
    """Group norm from gates. x: (N, C, H, W); gamma, beta: (1, C, 1, 1). Returns out: (N, C, H, W)."""
    x, gamma, beta = _as_tensor(x, "x"), _as_tensor(gamma, "gamma"), _as_tensor(beta, "beta")
    N, C, H, W = x.shape
    if C % G:
        raise ValueError(f"G must divide the channel count C={C}, got G={G}")
    grouped = x.reshape(N, G, C // G, H, W).named("xg")
    xhatg = _normalize(grouped, (2, 3, 4), True, eps, xhat="xhatg")
    xhat = xhatg.reshape(N, C, H, W).named("xhat")
    return _scale_shift(xhat, gamma, beta)
