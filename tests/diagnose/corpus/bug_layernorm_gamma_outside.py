"""Layer norm backward over the right axis, but with gamma factored out of the sums over features."""
import numpy as np


def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (xhat, gamma, var, eps)


def layernorm_backward(dout, cache):
    xhat, gamma, var, eps = cache
    D = dout.shape[1]
    dgamma = np.sum(dout * xhat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dx = gamma / (D * np.sqrt(var + eps)) * (D * dout - np.sum(dout, axis=1, keepdims=True)
                                              - xhat * np.sum(dout * xhat, axis=1, keepdims=True))
    return dx, dgamma, dbeta
