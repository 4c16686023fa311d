"""Layer norm whose backward uses x where x - mean belongs: right only for zero-mean rows."""
import numpy as np


def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (x, xhat, mu, var, gamma, eps)


def layernorm_backward(dout, cache):
    x, xhat, mu, var, gamma, eps = cache
    D = x.shape[1]
    ivar = 1 / np.sqrt(var + eps)
    dxhat = dout * gamma
    dvar = np.sum(dxhat * x, axis=1, keepdims=True) * -0.5 * ivar ** 3
    dmu = -np.sum(dxhat * ivar, axis=1, keepdims=True)
    dx = dxhat * ivar + dvar * 2 * (x - mu) / D + dmu / D
    return dx, np.sum(dout * xhat, axis=0), np.sum(dout, axis=0)
