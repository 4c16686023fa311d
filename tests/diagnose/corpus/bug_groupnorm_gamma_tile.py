"""Group norm on an (N*G, -1) view, with gamma spread over it by np.tile where np.repeat belongs."""
import numpy as np


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """
    - gamma: Scale parameter, of shape (C,)
    - beta: Shift parameter, of shape (C,)
    """
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    xg = x.reshape(N * G, -1)
    mu = xg.mean(axis=1, keepdims=True)
    var = xg.var(axis=1, keepdims=True)
    xhat = ((xg - mu) / np.sqrt(var + eps)).reshape(N, C * H * W)
    g = np.tile(gamma.ravel(), H * W)
    b = np.tile(beta.ravel(), H * W)
    out = (g * xhat + b).reshape(N, C, H, W)
    return out, (xhat, g, var, eps, G)
