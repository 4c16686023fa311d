"""Half-way: the forward is done; the backwards stop at the starter's markers."""
import numpy as np


def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (xhat, gamma, var, eps)


def layernorm_backward(dout, cache):
    dx, dgamma, dbeta = None, None, None
    # TODO: Implement the backward pass for layer norm.
    assert False, "TODO"
    return dx, dgamma, dbeta


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    out, cache = None, None
    # TODO: Implement the forward pass for spatial group normalization.
    pass
    return out, cache
