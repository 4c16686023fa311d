"""Spatial batch norm that keeps its running statistics as (1, C, 1, 1), consistently:
test mode uses them without a reshape (so seeding them as (C,) would break it)."""
import numpy as np


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    N, C, H, W = x.shape
    running_mean = bn_param.get("running_mean", np.zeros((1, C, 1, 1)))
    running_var = bn_param.get("running_var", np.zeros((1, C, 1, 1)))
    g, b = gamma.reshape(1, C, 1, 1), beta.reshape(1, C, 1, 1)
    if mode == "train":
        mu = x.mean(axis=(0, 2, 3), keepdims=True)
        var = x.var(axis=(0, 2, 3), keepdims=True)
        xhat = (x - mu) / np.sqrt(var + eps)
        out = g * xhat + b
        cache = (xhat, g, var, eps)
        bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * mu
        bn_param["running_var"] = momentum * running_var + (1 - momentum) * var
    else:
        assert running_mean.ndim == 4, "running stats are kept as (1, C, 1, 1)"
        out = g * (x - running_mean) / np.sqrt(running_var + eps) + b
        cache = None
    return out, cache


def spatial_batchnorm_backward(dout, cache):
    xhat, g, var, eps = cache
    N, C, H, W = dout.shape
    M = N * H * W
    dbeta = dout.sum(axis=(0, 2, 3))
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))
    dxhat = dout * g
    dx = (M * dxhat - dxhat.sum(axis=(0, 2, 3), keepdims=True)
          - xhat * (dxhat * xhat).sum(axis=(0, 2, 3), keepdims=True)) / (M * np.sqrt(var + eps))
    return dx, dgamma, dbeta
