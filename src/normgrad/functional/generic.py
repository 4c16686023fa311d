"""Any declared norm in the CS231n style: ``norm_forward(spec, x, gamma, beta, param)``
and ``norm_backward(dout, cache)``.

The named functions (batchnorm_forward, layernorm_forward, ...) are this with their
spec; a norm a user declares as a ``NormSpec`` gets the same pair with no code of its
own. Statistics come from ``normalize`` (readable NumPy, float64 accumulation); a spec
with ``running_stats`` keeps CS231n's running averages in ``param``
(``core.running``: running = momentum * running + (1 - momentum) * batch, zeros where
missing, the biased batch variance; test mode normalizes with them).
"""

from __future__ import annotations

from ..core import running
from ..core import validate as v
from ..core.specs import NormSpec
from ._norm import NormCache, normalize
from ._norm import norm_backward as closed_form_backward


def norm_forward(spec: NormSpec, x, gamma, beta, param=None, G=None, *, mask=None, kind: str | None = None,
                 gamma_shapes=None, name: str = "bn_param"):
    """Normalize x as ``spec`` declares, then scale by gamma and shift by beta.

    Inputs:
    - spec: the norm (``normgrad.NormSpec``)
    - x: data of shape (N, C, *spatial), or (..., C) for a features-last spec
    - gamma, beta: scale and shift, each of shape (C,) (or one of ``gamma_shapes``)
    - param: dict with optional eps (default 1e-5); for a spec with running
      statistics also mode ('train'/'test', required), momentum (0.9),
      running_mean and running_var ((C,), replaced by new arrays in train mode)
    - G: groups, for a spec whose groups are given
    - mask: bool, x's shape without its channel axis, True = valid position: in
      training the statistics (and the running averages, the unbiased variance from
      the valid count) are over the valid positions only; every position is
      normalized with them (test mode: the running statistics, mask unused)
    Returns a tuple of:
    - out: output of x's shape and dtype
    - cache: what norm_backward needs
    """
    param = v.param_dict(param, name)
    x = v.checked_input("x", x, 1 if spec.features_last else 2, min_ndim=1 if spec.features_last else 2)
    C = spec.channels(x.shape)
    shapes = gamma_shapes or ((C,),)
    gamma = v.param_vector("gamma", gamma, shapes, x.dtype)
    beta = v.param_vector("beta", beta, shapes, x.dtype)
    if gamma.shape != beta.shape:
        raise ValueError(f"gamma and beta must have the same shape, got {gamma.shape} and {beta.shape}")
    G = spec.num_groups(C, G)
    eps = v.eps_value(param.get("eps", 1e-5), x.dtype)
    kind = kind or spec.name
    weights = None if mask is None else spec.mask_weights(mask, x.shape, G, x.dtype)
    if not spec.running_stats:
        if weights is not None and spec.across == "batch":
            v.enough_values(int(weights.sum()), f"input of shape {x.shape} with its mask")
        return normalize(kind, spec, x, gamma, beta, eps, G, weights=weights)
    mode = v.mode_value(param, name)
    momentum = v.momentum_value(param.get("momentum", 0.9))
    old = running.read_cs231n(param, C, x.dtype, name)
    if mode == "test":
        param["running_mean"], param["running_var"] = old
        return normalize(kind, spec, x, gamma, beta, eps, G, stats=old)
    count = running.valid_counts(spec, x.shape, G, weights)
    running.check_count(count, spec.centered, f"input of shape {x.shape}" + ("" if mask is None else " with its mask"))
    out, cache = normalize(kind, spec, x, gamma, beta, eps, G, weights=weights)
    stats_shape = spec.stats_shape(spec.view(x.shape, G))
    mean, var = running.batch_moments(running.CS231N, cache.mean.reshape(stats_shape), cache.var.reshape(stats_shape),
                                      count, spec.across, spec.centered)
    running.write_cs231n(param, old, mean, var, momentum, x.dtype, name)
    return out, cache


def norm_backward(dout, cache):
    """Backward pass of ``norm_forward`` (closed form).

    Inputs:
    - dout: upstream derivatives, of the forward output's shape
    - cache: from norm_forward
    Returns a tuple of:
    - dx: x's shape; dgamma, dbeta: gamma's shape
    """
    return closed_form_backward(dout, v.cache_of(cache, NormCache, "norm_forward"))
