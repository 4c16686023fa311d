"""The computational-graph batch norm many students copied (nine numbered steps, a 7-tuple cache),
with layer norm done by transposing into batch norm, as many 2019-2024 solutions do."""
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    layernorm = bn_param.get("layernorm", 0)
    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))
    out, cache = None, None
    if mode == "train":
        # step1: calculate mean
        mu = 1.0 / N * np.sum(x, axis=0)
        # step2: subtract mean vector of every trainings example
        xmu = x - mu
        # step3: following the lower branch - calculation denominator
        sq = xmu ** 2
        # step4: calculate variance
        var = 1.0 / N * np.sum(sq, axis=0)
        # step5: add eps for numerical stability, then sqrt
        sqrtvar = np.sqrt(var + eps)
        # step6: invert sqrtwar
        ivar = 1.0 / sqrtvar
        # step7: execute normalization
        xhat = xmu * ivar
        # step8: Nor the two transformation steps
        gammax = gamma * xhat
        # step9
        out = gammax + beta
        cache = (xhat, gamma, xmu, ivar, sqrtvar, var, eps, layernorm)
        if not layernorm:
            running_mean = momentum * running_mean + (1 - momentum) * mu
            running_var = momentum * running_var + (1 - momentum) * var
    elif mode == "test":
        x_hat = (x - running_mean) / np.sqrt(running_var + eps)
        out = gamma * x_hat + beta
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    xhat, gamma, xmu, ivar, sqrtvar, var, eps, layernorm = cache
    N, D = dout.shape
    dbeta = np.sum(dout, axis=layernorm)
    dgammax = dout
    dgamma = np.sum(dgammax * xhat, axis=layernorm)
    dxhat = dgammax * gamma
    divar = np.sum(dxhat * xmu, axis=0)
    dxmu1 = dxhat * ivar
    dsqrtvar = -1.0 / (sqrtvar ** 2) * divar
    dvar = 0.5 * 1.0 / np.sqrt(var + eps) * dsqrtvar
    dsq = 1.0 / N * np.ones((N, D)) * dvar
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -1 * np.sum(dxmu1 + dxmu2, axis=0)
    dx2 = 1.0 / N * np.ones((N, D)) * dmu
    dx = dx1 + dx2
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    xhat, gamma, xmu, ivar, sqrtvar, var, eps, layernorm = cache
    N = dout.shape[0]
    dgamma = np.sum(dout * xhat, axis=layernorm)
    dbeta = np.sum(dout, axis=layernorm)
    dxhat = dout * gamma
    dx = 1.0 / N * ivar * (N * dxhat - np.sum(dxhat, axis=0) - xhat * np.sum(dxhat * xhat, axis=0))
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    ln_param.setdefault("mode", "train")
    ln_param.setdefault("layernorm", 1)
    out, cache = batchnorm_forward(x.T, gamma.reshape(-1, 1), beta.reshape(-1, 1), ln_param)
    return out.T, cache


def layernorm_backward(dout, cache):
    dx, dgamma, dbeta = batchnorm_backward_alt(dout.T, cache)
    return dx.T, dgamma, dbeta
