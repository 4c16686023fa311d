"""The other CS231n layers the nets need, each a forward/backward pair.

affine, relu, dropout, softmax loss, convolution (im2col through a strided view,
then one matrix product) and max pooling (strided windows), plus the "sandwich"
helpers that chain them with a normalization. Signatures follow CS231n
assignment 2 so a student can swap these in.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..core import validate as v
from .batchnorm import batchnorm_backward_alt, batchnorm_forward, spatial_batchnorm_backward, spatial_batchnorm_forward
from .groupnorm import spatial_groupnorm_backward, spatial_groupnorm_forward
from .layernorm import layernorm_backward, layernorm_forward

# ----------------------------------------------------------------------------- affine


def affine_forward(x, w, b):
    """out = x.reshape(N, D) @ w + b.

    Inputs:
    - x: data of shape (N, d_1, ..., d_k), D = d_1 * ... * d_k
    - w: weights of shape (D, M)
    - b: biases of shape (M,)
    Returns a tuple of:
    - out: output of shape (N, M)
    - cache: (x, w)
    """
    x = v.float_array("x", x)
    w, b = v.param_array("w", w, x.dtype, 2), v.param_array("b", b, x.dtype, 1)
    if x.ndim < 1 or int(np.prod(x.shape[1:])) != w.shape[0] or b.shape != (w.shape[1],):
        raise ValueError(f"affine_forward: x {x.shape}, w {w.shape}, b {b.shape} do not fit (N, D) @ (D, M) + (M,)")
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w)


def affine_backward(dout, cache):
    """Backward of affine_forward. dout: (N, M). Returns dx (x's shape), dw (D, M), db (M,)."""
    x, w = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


# ----------------------------------------------------------------------------- relu


def relu_forward(x):
    """out = max(0, x), any shape. Returns (out, cache=x)."""
    x = v.float_array("x", x)
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """dx = dout where x > 0, else 0."""
    return dout * (cache > 0)


# ----------------------------------------------------------------------------- dropout


def dropout_forward(x, dropout_param):
    """Inverted dropout: keep each unit with probability p and scale by 1/p in training.

    Inputs:
    - x: any shape
    - dropout_param: dict with p (keep probability, in (0, 1]), mode ('train'/'test'),
      and optional seed: the mask is then the same on every call (for gradient checks),
      drawn as ``np.random.seed(seed); np.random.rand(*x.shape)`` would draw it, without
      touching NumPy's global generator. Without a seed the mask comes from
      ``dropout_param['generator']`` (normgrad's own key: a np.random.Generator), else
      from NumPy's global generator, so ``np.random.seed`` makes a run reproducible.
    Returns (out, cache).
    """
    x = v.float_array("x", x)
    p = dropout_param.get("p", 1.0)
    if not 0.0 < p <= 1.0:
        raise ValueError(f"dropout_param['p'] (keep probability) must lie in (0, 1], got {p}")
    mode = v.mode_value(dropout_param, "dropout_param")
    mask = None
    if mode == "train" and p < 1.0:
        seed, generator = dropout_param.get("seed"), dropout_param.get("generator")
        if seed is not None:
            uniform = np.random.RandomState(seed).rand(*x.shape)
        elif generator is not None:
            uniform = generator.random(x.shape, dtype=x.dtype if x.dtype == np.float32 else np.float64)
        else:
            uniform = np.random.rand(*x.shape)
        mask = (uniform < p).astype(x.dtype) / np.asarray(p, x.dtype)
        out = x * mask
    else:
        out = x
    return out, (dropout_param, mask)


def dropout_backward(dout, cache):
    _, mask = cache
    return dout if mask is None else dout * mask


# ----------------------------------------------------------------------------- loss


def softmax_loss(x, y):
    """Mean cross-entropy of softmax scores.

    Inputs:
    - x: scores of shape (N, C)
    - y: labels of shape (N,), integers in [0, C)
    Returns (loss, dx) with dx of x's shape.
    """
    x = v.float_array("x", x, 2)
    v.finite("scores", x)
    y = np.asarray(y)
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be integer labels of shape ({x.shape[0]},), got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= x.shape[1]):
        raise ValueError(f"labels must lie in [0, {x.shape[1]}), got [{y.min()}, {y.max()}]")
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    N = x.shape[0]
    loss = -log_probs[np.arange(N), y].mean()
    dx = np.exp(log_probs)
    dx[np.arange(N), y] -= 1
    return float(loss), dx / N


# ----------------------------------------------------------------------------- conv


def _conv_windows(xp, HH, WW, stride):
    """(N, C, H', W', HH, WW) view of every receptive field, no copy."""
    win = sliding_window_view(xp, (HH, WW), axis=(2, 3))
    return win[:, :, ::stride, ::stride]


def conv_forward(x, w, b, conv_param):
    """Convolution (cross-correlation) by im2col and one matrix product.

    Inputs:
    - x: (N, C, H, W); w: (F, C, HH, WW); b: (F,)
    - conv_param: stride (default 1), pad (default 0)
    Returns out (N, F, H', W') with H' = 1 + (H + 2 pad - HH) / stride, and a cache.
    """
    x = v.float_array("x", x, 4)
    w, b = v.param_array("w", w, x.dtype, 4), v.param_array("b", b, x.dtype, 1)
    stride, pad = int(conv_param.get("stride", 1)), int(conv_param.get("pad", 0))
    N, C, H, W = x.shape
    F, Cw, HH, WW = w.shape
    if Cw != C or b.shape != (F,):
        raise ValueError(f"conv_forward: x {x.shape}, w {w.shape}, b {b.shape} do not fit")
    if stride < 1 or pad < 0 or (H + 2 * pad - HH) % stride or (W + 2 * pad - WW) % stride:
        raise ValueError(f"conv_forward: stride {stride}, pad {pad} do not tile a {H}x{W} input with {HH}x{WW} filters")
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = _conv_windows(xp, HH, WW, stride)  # (N, C, Ho, Wo, HH, WW)
    Ho, Wo = win.shape[2], win.shape[3]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(N * Ho * Wo, C * HH * WW)
    out = cols @ w.reshape(F, -1).T + b
    out = out.reshape(N, Ho, Wo, F).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out), (x.shape, xp.shape, cols, w, stride, pad)


def conv_backward(dout, cache):
    """Backward of conv_forward. Returns dx (N, C, H, W), dw (F, C, HH, WW), db (F,)."""
    x_shape, xp_shape, cols, w, stride, pad = cache
    N, C, H, W = x_shape
    F, _, HH, WW = w.shape
    Ho, Wo = dout.shape[2], dout.shape[3]
    d2 = dout.transpose(0, 2, 3, 1).reshape(-1, F)
    db = d2.sum(axis=0)
    dw = (d2.T @ cols).reshape(w.shape)
    dcols = (d2 @ w.reshape(F, -1)).reshape(N, Ho, Wo, C, HH, WW)
    dxp = np.zeros(xp_shape, dtype=dout.dtype)
    for i in range(HH):  # col2im: one strided add per filter offset, not per pixel
        for j in range(WW):
            dxp[:, :, i:i + stride * Ho:stride, j:j + stride * Wo:stride] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, pad:pad + H, pad:pad + W], dw, db


# ----------------------------------------------------------------------------- pool


def max_pool_forward(x, pool_param):
    """Max pooling. x: (N, C, H, W); pool_param: pool_height, pool_width, stride.
    Returns out (N, C, H', W') and a cache."""
    x = v.float_array("x", x, 4)
    ph, pw = int(pool_param.get("pool_height", 2)), int(pool_param.get("pool_width", 2))
    stride = int(pool_param.get("stride", 2))
    N, C, H, W = x.shape
    if (H - ph) % stride or (W - pw) % stride:
        raise ValueError(f"max_pool_forward: {ph}x{pw} pools with stride {stride} do not tile {H}x{W}")
    win = sliding_window_view(x, (ph, pw), axis=(2, 3))[:, :, ::stride, ::stride]
    flat = win.reshape(*win.shape[:4], ph * pw)
    arg = flat.argmax(axis=-1)
    out = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    return out, (x.shape, arg, ph, pw, stride)


def max_pool_backward(dout, cache):
    """Backward of max_pool_forward: the gradient goes to each window's maximum."""
    x_shape, arg, ph, pw, stride = cache
    N, C, Ho, Wo = dout.shape
    dx = np.zeros(x_shape, dtype=dout.dtype)
    n, c, i, j = np.indices((N, C, Ho, Wo), sparse=False)
    rows = i * stride + arg // pw
    cols = j * stride + arg % pw
    np.add.at(dx, (n, c, rows, cols), dout)
    return dx


# ----------------------------------------------------------------------------- sandwiches


def affine_relu_forward(x, w, b):
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout, cache):
    fc_cache, relu_cache = cache
    return affine_backward(relu_backward(dout, relu_cache), fc_cache)


_NORMS = {
    "batchnorm": (batchnorm_forward, batchnorm_backward_alt),
    "layernorm": (layernorm_forward, layernorm_backward),
}


def affine_norm_relu_forward(x, w, b, gamma, beta, norm_param, normalization: str):
    """affine -> batchnorm or layernorm -> relu."""
    if normalization not in _NORMS:
        raise ValueError(f"normalization must be one of {sorted(_NORMS)}, got {normalization!r}")
    a, fc_cache = affine_forward(x, w, b)
    an, norm_cache = _NORMS[normalization][0](a, gamma, beta, norm_param)
    out, relu_cache = relu_forward(an)
    return out, (fc_cache, norm_cache, relu_cache, normalization)


def affine_norm_relu_backward(dout, cache):
    """Returns dx, dw, db, dgamma, dbeta."""
    fc_cache, norm_cache, relu_cache, normalization = cache
    dan = relu_backward(dout, relu_cache)
    da, dgamma, dbeta = _NORMS[normalization][1](dan, norm_cache)
    dx, dw, db = affine_backward(da, fc_cache)
    return dx, dw, db, dgamma, dbeta


def conv_relu_forward(x, w, b, conv_param):
    """conv -> relu. Returns (out, cache)."""
    a, conv_cache = conv_forward(x, w, b, conv_param)
    out, relu_cache = relu_forward(a)
    return out, (conv_cache, relu_cache)


def conv_relu_backward(dout, cache):
    """Returns dx, dw, db."""
    conv_cache, relu_cache = cache
    return conv_backward(relu_backward(dout, relu_cache), conv_cache)


def conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param):
    """conv -> spatial batch norm -> relu. Returns (out, cache)."""
    return conv_norm_relu_forward(x, w, b, gamma, beta, conv_param, bn_param, "batchnorm")


def conv_bn_relu_backward(dout, cache):
    """Returns dx, dw, db, dgamma, dbeta."""
    return conv_norm_relu_backward(dout, cache)


def conv_relu_pool_forward(x, w, b, conv_param, pool_param):
    a, conv_cache = conv_forward(x, w, b, conv_param)
    s, relu_cache = relu_forward(a)
    out, pool_cache = max_pool_forward(s, pool_param)
    return out, (conv_cache, relu_cache, pool_cache)


def conv_relu_pool_backward(dout, cache):
    conv_cache, relu_cache, pool_cache = cache
    return conv_backward(relu_backward(max_pool_backward(dout, pool_cache), relu_cache), conv_cache)


def conv_norm_relu_forward(x, w, b, gamma, beta, conv_param, norm_param, normalization: str, G: int = 1):
    """conv -> spatial batchnorm or groupnorm -> relu."""
    a, conv_cache = conv_forward(x, w, b, conv_param)
    if normalization == "batchnorm":
        an, norm_cache = spatial_batchnorm_forward(a, gamma, beta, norm_param)
    elif normalization == "groupnorm":
        an, norm_cache = spatial_groupnorm_forward(a, gamma, beta, G, norm_param)
    else:
        raise ValueError(f"normalization must be 'batchnorm' or 'groupnorm', got {normalization!r}")
    out, relu_cache = relu_forward(an)
    return out, (conv_cache, norm_cache, relu_cache, normalization)


def conv_norm_relu_backward(dout, cache):
    conv_cache, norm_cache, relu_cache, normalization = cache
    backward = spatial_batchnorm_backward if normalization == "batchnorm" else spatial_groupnorm_backward
    da, dgamma, dbeta = backward(relu_backward(dout, relu_cache), norm_cache)
    dx, dw, db = conv_backward(da, conv_cache)
    return dx, dw, db, dgamma, dbeta
