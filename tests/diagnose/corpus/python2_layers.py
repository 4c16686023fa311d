"""A 2016 file: Python 2 (print statements, xrange) around a correct batch norm."""
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param['mode']
    eps = bn_param.get('eps', 1e-5)
    momentum = bn_param.get('momentum', 0.9)
    N, D = x.shape
    running_mean = bn_param.get('running_mean', np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get('running_var', np.zeros(D, dtype=x.dtype))
    if mode == 'train':
        mu = x.mean(axis=0)
        var = x.var(axis=0)
        xhat = (x - mu) / np.sqrt(var + eps)
        out = gamma * xhat + beta
        cache = (xhat, gamma, var, eps)
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
    else:
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
        cache = None
    bn_param['running_mean'] = running_mean
    bn_param['running_var'] = running_var
    return out, cache


def batchnorm_backward_alt(dout, cache):
    xhat, gamma, var, eps = cache
    N = dout.shape[0]
    dxhat = dout * gamma
    dx = (N * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (N * np.sqrt(var + eps))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def layernorm_forward(x, gamma, beta, ln_param):
    out = np.zeros_like(x)
    for i in xrange(x.shape[0]):
        row = x[i]
        out[i] = gamma * (row - row.mean()) / np.sqrt(row.var() + ln_param.get('eps', 1e-5)) + beta
    return out, None


def svm_loss(x, y):
    print "computing the loss"
    return 0.0, np.zeros_like(x)
