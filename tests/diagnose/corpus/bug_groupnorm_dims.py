"""Group norm that keeps the grouped (N, G, C/G, H, W) view: its output has an extra
dimension whatever gamma's shape. Its backward crashes when G = 1 (a squeeze removes
the group axis)."""
import numpy as np


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    xg = x.reshape(N, G, C // G, H, W)
    mean = xg.mean(axis=(2, 3, 4), keepdims=True)
    var = xg.var(axis=(2, 3, 4), keepdims=True)
    x_hat = (xg - mean) / np.sqrt(var + eps)
    out = gamma.reshape(1, G, C // G, 1, 1) * x_hat + beta.reshape(1, G, C // G, 1, 1)
    return out, (x_hat.reshape(N, C, H, W), gamma, var.reshape(N, G, 1), eps, G)


def spatial_groupnorm_backward(dout, cache):
    x_hat, gamma, var, eps, G = cache
    N, C, H, W = dout.shape
    std = np.sqrt(var.squeeze() + eps)[:, :, None]
    g = gamma.reshape(1, C, 1, 1)
    dgamma = np.sum(dout * x_hat, axis=(0, 2, 3)).reshape(gamma.shape)
    dbeta = np.sum(dout, axis=(0, 2, 3)).reshape(gamma.shape)
    dxh = (dout * g).reshape(N, G, -1)
    xh = x_hat.reshape(N, G, -1)
    M = xh.shape[2]
    dx = (M * dxh - dxh.sum(axis=2, keepdims=True) - xh * (dxh * xh).sum(axis=2, keepdims=True)) / (M * std)
    return dx.reshape(N, C, H, W), dgamma, dbeta
