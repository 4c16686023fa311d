"""Layer norm backward copied from batch norm's: sums over axis 0, gamma factored out of them."""
import numpy as np


def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (xhat, gamma, var, eps)


def layernorm_backward(dout, cache):
    xhat, gamma, var, eps = cache
    N = dout.shape[0]
    dgamma = np.sum(dout * xhat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dx = (1.0 / N) * gamma / np.sqrt(var + eps) * (N * dout - np.sum(dout, axis=0)
                                                   - xhat * np.sum(dout * xhat, axis=0))
    return dx, dgamma, dbeta
