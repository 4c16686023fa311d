"""Group norm written for gamma of shape (C,) while its docstring (and the notebook) pass
(1, C, 1, 1): gamma[:, None, None] then broadcasts into extra dimensions."""
import numpy as np


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """
    Inputs:
    - x: Input data of shape (N, C, H, W)
    - gamma: Scale parameter, of shape (1, C, 1, 1)
    - beta: Shift parameter, of shape (1, C, 1, 1)
    - G: Integer number of groups to split into, should be a divisor of C
    """
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    xg = x.reshape(N, G, -1)
    mu = xg.mean(axis=2, keepdims=True)
    var = xg.var(axis=2, keepdims=True)
    xhat = ((xg - mu) / np.sqrt(var + eps)).reshape(N, C, H, W)
    out = gamma[:, None, None] * xhat + beta[:, None, None]
    return out, (xhat, gamma, var, eps, G)
