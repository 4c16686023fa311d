"""Student-style: list caches, keepdims=True everywhere (so running statistics and dgamma
come back (1, D)), layer norm through the transposed batch-norm code with a flag."""
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    layernorm = bn_param.get("layernorm", 0)
    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))
    if mode == "train":
        mu = np.mean(x, axis=0, keepdims=True)
        var = np.var(x, axis=0, keepdims=True)
        std = np.sqrt(var + eps)
        xhat = (x - mu) / std
        out = gamma * xhat + beta
        cache = [xhat, gamma, std, layernorm]
        if not layernorm:
            running_mean = momentum * running_mean + (1 - momentum) * mu
            running_var = momentum * running_var + (1 - momentum) * var
    elif mode == "test":
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
        cache = None
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward_alt(dout, cache):
    xhat, gamma, std, layernorm = cache
    N = dout.shape[0]
    if layernorm:
        dgamma = np.sum(dout * xhat, axis=1)
        dbeta = np.sum(dout, axis=1)
    else:
        dgamma = np.sum(dout * xhat, axis=0, keepdims=True)
        dbeta = np.sum(dout, axis=0, keepdims=True)
    dxhat = dout * gamma
    dx = (N * dxhat - np.sum(dxhat, axis=0, keepdims=True)
          - xhat * np.sum(dxhat * xhat, axis=0, keepdims=True)) / (N * std)
    return dx, dgamma, dbeta


def batchnorm_backward(dout, cache):
    return batchnorm_backward_alt(dout, cache)


def layernorm_forward(x, gamma, beta, ln_param):
    ln_param["mode"] = "train"
    ln_param["layernorm"] = 1
    out, cache = batchnorm_forward(x.T, gamma.reshape(-1, 1), beta.reshape(-1, 1), ln_param)
    return out.T, cache


def layernorm_backward(dout, cache):
    dx, dgamma, dbeta = batchnorm_backward_alt(dout.T, cache)
    return dx.T, dgamma, dbeta
