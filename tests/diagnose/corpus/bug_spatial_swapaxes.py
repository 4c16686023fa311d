"""Spatial batch norm with swapaxes(1, 3) there but transpose(0, 3, 1, 2) back: H and W swapped."""
import numpy as np


def _bn(x, gamma, beta, eps):
    mu, var = x.mean(axis=0), x.var(axis=0)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (xhat, gamma, var, eps)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    eps = bn_param.get("eps", 1e-5)
    flat = x.swapaxes(1, 3).reshape(-1, C)
    if bn_param["mode"] == "train":
        out, cache = _bn(flat, gamma, beta, eps)
        m = bn_param.get("momentum", 0.9)
        bn_param["running_mean"] = m * bn_param.get("running_mean", np.zeros(C)) + (1 - m) * flat.mean(axis=0)
        bn_param["running_var"] = m * bn_param.get("running_var", np.zeros(C)) + (1 - m) * flat.var(axis=0)
    else:
        out = gamma * (flat - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + eps) + beta
        cache = None
    return out.reshape(N, H, W, C).transpose(0, 3, 1, 2), cache


def spatial_batchnorm_backward(dout, cache):
    xhat, gamma, var, eps = cache
    N, C, H, W = dout.shape
    d = dout.swapaxes(1, 3).reshape(-1, C)
    M = d.shape[0]
    dxhat = d * gamma
    dx = (M * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0)) / (M * np.sqrt(var + eps))
    return dx.reshape(N, H, W, C).transpose(0, 3, 1, 2), (d * xhat).sum(0), d.sum(0)
