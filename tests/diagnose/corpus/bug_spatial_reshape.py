"""Spatial batch norm reshaping (N, C, H, W) straight to (N*H*W, C), forward and backward."""
import numpy as np

from _bn_base import batchnorm_backward_alt, batchnorm_forward


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    out, cache = batchnorm_forward(x.reshape(N * H * W, C), gamma, beta, bn_param)
    return out.reshape(N, C, H, W), cache


def spatial_batchnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    dx, dgamma, dbeta = batchnorm_backward_alt(dout.reshape(N * H * W, C), cache)
    return dx.reshape(N, C, H, W), dgamma, dbeta
