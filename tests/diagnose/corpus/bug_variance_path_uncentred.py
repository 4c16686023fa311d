"""Closed-form backward with x where x - mu belongs in the variance path."""
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    D = x.shape[1]
    if bn_param["mode"] == "train":
        mu, var = x.mean(axis=0), x.var(axis=0)
        xhat = (x - mu) / np.sqrt(var + eps)
        bn_param["running_mean"] = momentum * bn_param.get("running_mean", np.zeros(D)) + (1 - momentum) * mu
        bn_param["running_var"] = momentum * bn_param.get("running_var", np.zeros(D)) + (1 - momentum) * var
        return gamma * xhat + beta, (x, mu, var, gamma, eps)
    xhat = (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + eps)
    return gamma * xhat + beta, None


def batchnorm_backward_alt(dout, cache):
    x, mu, var, gamma, eps = cache
    N = x.shape[0]
    ivar = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * ivar
    dxhat = dout * gamma
    dx = ivar / N * (N * dxhat - dxhat.sum(axis=0) - x * ivar * (dxhat * x * ivar).sum(axis=0))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)
