"""Student-style, 2017 layout: 2-space indent, dict caches, only batch norm and
spatial batch norm (swapaxes instead of transpose), a helper function."""
from builtins import range
import numpy as np


def _stats(x):
  return x.mean(axis=0), ((x - x.mean(axis=0)) ** 2).mean(axis=0)


def batchnorm_forward(x, gamma, beta, bn_param):
  mode = bn_param['mode']
  eps = bn_param.get('eps', 1e-5)
  momentum = bn_param.get('momentum', 0.9)
  N, D = x.shape
  running_mean = bn_param.get('running_mean', np.zeros(D, dtype=x.dtype))
  running_var = bn_param.get('running_var', np.zeros(D, dtype=x.dtype))
  out, cache = None, None
  if mode == 'train':
    mu, var = _stats(x)
    std = np.sqrt(var + eps)
    xhat = (x - mu) / std
    out = gamma * xhat + beta
    cache = {'xhat': xhat, 'gamma': gamma, 'std': std, 'N': N}
    running_mean = momentum * running_mean + (1 - momentum) * mu
    running_var = momentum * running_var + (1 - momentum) * var
  elif mode == 'test':
    out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
  else:
    raise ValueError('Invalid forward batchnorm mode "%s"' % mode)
  bn_param['running_mean'] = running_mean
  bn_param['running_var'] = running_var
  return out, cache


def batchnorm_backward(dout, cache):
  xhat, gamma, std, N = cache['xhat'], cache['gamma'], cache['std'], cache['N']
  dbeta = dout.sum(axis=0)
  dgamma = (dout * xhat).sum(axis=0)
  dxhat = dout * gamma
  dx = (1. / N) / std * (N * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
  return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
  return batchnorm_backward(dout, cache)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
  N, C, H, W = x.shape
  x_swapped = np.swapaxes(x, 1, 3).reshape(-1, C)
  out, cache = batchnorm_forward(x_swapped, gamma, beta, bn_param)
  out = np.swapaxes(out.reshape(N, W, H, C), 1, 3)
  return out, cache


def spatial_batchnorm_backward(dout, cache):
  N, C, H, W = dout.shape
  dx, dgamma, dbeta = batchnorm_backward(np.swapaxes(dout, 1, 3).reshape(-1, C), cache)
  dx = np.swapaxes(dx.reshape(N, W, H, C), 1, 3)
  return dx, dgamma, dbeta
