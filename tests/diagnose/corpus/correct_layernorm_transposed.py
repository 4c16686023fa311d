"""Layer norm as batch norm of x.T (a common solution): rounding noise where the true dx is 0 (D = 1)."""
import numpy as np


def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    xt = x.T
    mu = np.mean(xt, axis=0)
    xmu = xt - mu
    var = np.mean(xmu ** 2, axis=0)
    std = np.sqrt(var + eps)
    xhat = (xmu / std).T
    out = gamma * xhat + beta
    return out, (xmu, std, xhat, gamma)


def layernorm_backward(dout, cache):
    xmu, std, xhat, gamma = cache
    D = xmu.shape[0]
    dgamma = np.sum(dout * xhat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dxhat = (dout * gamma).T
    dvar = np.sum(dxhat * xmu, axis=0) * -0.5 * std ** -3
    dmu = np.sum(-dxhat / std, axis=0) + dvar * np.mean(-2.0 * xmu, axis=0)
    dx = dxhat / std + dvar * 2.0 * xmu / D + dmu / D
    return dx.T, dgamma, dbeta
