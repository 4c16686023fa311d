"""A learner's batch norm with two classic bugs, for `normgrad check examples/buggy/my_batchnorm.py`.

The forward updates the running averages the wrong way round; the backward drops
the path through the mean. Everything else is right.
"""

import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps, momentum = bn_param.get("eps", 1e-5), bn_param.get("momentum", 0.9)
    running_mean = bn_param.get("running_mean", np.zeros(x.shape[1]))
    running_var = bn_param.get("running_var", np.zeros(x.shape[1]))
    if mode == "train":
        mu, var = x.mean(axis=0), x.var(axis=0)
        xhat = (x - mu) / np.sqrt(var + eps)
        out, cache = gamma * xhat + beta, (xhat, gamma, var, eps)
        bn_param["running_mean"] = momentum * mu + (1 - momentum) * running_mean  # bug
        bn_param["running_var"] = momentum * var + (1 - momentum) * running_var  # bug
    elif mode == "test":
        out, cache = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta, None
    else:
        raise ValueError(f"invalid mode {mode!r}")
    return out, cache


def batchnorm_backward(dout, cache):
    xhat, gamma, var, eps = cache
    N = dout.shape[0]
    dxhat = dout * gamma
    ivar = 1.0 / np.sqrt(var + eps)
    dvar = np.sum(dxhat * xhat, axis=0) * -0.5 * ivar**2
    dx = dxhat * ivar + dvar * 2 * xhat / ivar / N  # bug: + dmu / N is missing
    return dx, np.sum(dout * xhat, axis=0), np.sum(dout, axis=0)
