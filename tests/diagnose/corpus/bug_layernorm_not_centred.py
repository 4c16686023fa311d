"""Layer norm that never subtracts the mean (divides x by its standard deviation)."""
import numpy as np


def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    mu = np.mean(x, axis=1, keepdims=True)
    var = np.var(x, axis=1, keepdims=True)
    xhat = x / np.sqrt(var + eps)
    return gamma * xhat + beta, (x, xhat, var, gamma, eps)
