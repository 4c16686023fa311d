"""Spatial batch norm through an (N, C*H*W) reshape: statistics per pixel, gamma repeated per pixel."""
import numpy as np


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    flat = x.reshape(N, -1)
    g, b = np.repeat(gamma, H * W), np.repeat(beta, H * W)
    if mode == "train":
        mu, var = flat.mean(axis=0), flat.var(axis=0)
        xhat = (flat - mu) / np.sqrt(var + eps)
        cache = (xhat, g, var, eps, x.shape)
        m = bn_param.get("momentum", 0.9)
        per_channel = x.transpose(1, 0, 2, 3).reshape(C, -1)
        bn_param["running_mean"] = m * bn_param.get("running_mean", np.zeros(C)) + (1 - m) * per_channel.mean(1)
        bn_param["running_var"] = m * bn_param.get("running_var", np.zeros(C)) + (1 - m) * per_channel.var(1)
    else:
        rm = np.repeat(bn_param["running_mean"], H * W)
        rv = np.repeat(bn_param["running_var"], H * W)
        xhat = (flat - rm) / np.sqrt(rv + eps)
        cache = None
    return (g * xhat + b).reshape(N, C, H, W), cache


def spatial_batchnorm_backward(dout, cache):
    xhat, g, var, eps, shape = cache
    N, C, H, W = shape
    d = dout.reshape(N, -1)
    dxhat = d * g
    dx = (N * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0)) / (N * np.sqrt(var + eps))
    dgamma = (d * xhat).reshape(N, C, H * W).sum(axis=(0, 2))
    dbeta = d.reshape(N, C, H * W).sum(axis=(0, 2))
    return dx.reshape(shape), dgamma, dbeta
