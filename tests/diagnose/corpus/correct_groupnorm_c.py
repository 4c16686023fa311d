"""Student-style group norm written for gamma of shape (C,) (the 2018-2020 docstrings),
through an (N*G, -1) reshape; dgamma and dbeta come back (C,)."""
import numpy as np


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    x_group = x.reshape(N * G, -1)
    mean = x_group.mean(axis=1, keepdims=True)
    var = x_group.var(axis=1, keepdims=True)
    x_hat = ((x_group - mean) / np.sqrt(var + eps)).reshape(N, C, H, W)
    out = gamma[:, None, None] * x_hat + beta[:, None, None]
    return out, (x_hat, gamma, var, eps, G)


def spatial_groupnorm_backward(dout, cache):
    x_hat, gamma, var, eps, G = cache
    N, C, H, W = dout.shape
    dgamma = np.sum(dout * x_hat, axis=(0, 2, 3))
    dbeta = np.sum(dout, axis=(0, 2, 3))
    dx_hat = (dout * gamma[:, None, None]).reshape(N * G, -1)
    xh = x_hat.reshape(N * G, -1)
    M = xh.shape[1]
    dx = (M * dx_hat - dx_hat.sum(axis=1, keepdims=True)
          - xh * (dx_hat * xh).sum(axis=1, keepdims=True)) / (M * np.sqrt(var + eps))
    return dx.reshape(N, C, H, W), dgamma, dbeta
