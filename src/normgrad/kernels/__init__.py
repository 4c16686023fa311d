"""Fused normalization kernels: the fast path, chosen automatically.

Numba kernels (parallel, compiled once and cached on disk) when Numba is
installed; otherwise, or when forced, the same kernels in NumPy. Force the NumPy
path with the environment variable ``NORMGRAD_KERNELS=numpy`` or
``use_numpy(True)``; ``backend()`` says which is in use.

Every function here validates its input like ``normgrad.functional`` does, keeps
x's dtype (float32 stays float32, statistics are accumulated in float64), and
keeps no array of x's size between forward and backward: the training forward
returns per-channel (or per-row) ``mean`` and ``invstd`` in float64, and the
backward recomputes xhat from x.

Shapes: batch norm takes x (N, C) or (N, C, *spatial); group norm x (N, C,
*spatial); layer norm x (..., D) normalized over the last axis.
"""

from __future__ import annotations

import os

import numpy as np

from ..functional import _validate as v
from . import _numpy

try:
    from . import _numba
except ImportError:  # Numba not installed: the NumPy path only
    _numba = None

_force_numpy = os.environ.get("NORMGRAD_KERNELS", "").lower() == "numpy"


def use_numpy(flag: bool = True) -> None:
    """Force (or stop forcing) the NumPy path for every kernel call."""
    global _force_numpy
    _force_numpy = bool(flag)


def backend() -> str:
    """'numba' or 'numpy': the implementation the next call will use."""
    return "numpy" if _force_numpy or _numba is None else "numba"


def _impl():
    return _numpy if backend() == "numpy" else _numba


# Below this many elements a parallel region costs more than it saves; worse, in a
# training loop the OpenMP workers and BLAS's threads spin-wait for work after each
# call and fight over the cores, which made a (100, 128) batch norm 70x slower
# between two matmuls on a 2-core machine. Small calls run on the calling thread.
PARALLEL_MIN_SIZE = 1 << 18


def _call(name: str, size: int, *args):
    """Run kernel ``name`` of the active backend, on one thread when ``size`` is small."""
    impl = _impl()
    kernel = getattr(impl, name)
    if impl is _numpy or size >= PARALLEL_MIN_SIZE:
        return kernel(*args)
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(threads)


def _nchunks(n: int) -> int:
    """Work items per parallel loop: fixed for a given n, so results do not depend
    on the thread count (sums are added in the same order)."""
    return max(1, min(n, 16))


def _input(x, min_ndim: int, name: str = "x") -> np.ndarray:
    """A non-empty float32/64 C-contiguous array. NaN/Inf are caught by ``_finite_after``."""
    x = v.float_array(name, x)
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    return np.ascontiguousarray(x)


def _finite_after(results, *inputs) -> None:
    """NaN/Inf checks without an extra pass over the data.

    Every kernel reduces over all of its inputs, and a NaN or Inf anywhere makes
    those sums non-finite: only then are the inputs scanned, to say where.
    ``inputs`` are (name, array) pairs.
    """
    if all(np.isfinite(r).all() for r in results):
        return
    for name, a in inputs:
        v.finite(name, a)
    raise ValueError("the statistics overflow float64: rescale the input")


def _as3d(x: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) viewed as (N, C, L)."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _channel_vector(name, a, C) -> np.ndarray:
    return np.ascontiguousarray(v.param_vector(name, a, ((C,),)), dtype=np.float64)


def _output(out, like: np.ndarray, name: str = "out") -> np.ndarray:
    if out is None:
        return np.empty_like(like)
    if not isinstance(out, np.ndarray) or out.shape != like.shape or out.dtype != like.dtype:
        raise ValueError(f"{name} must be an array of shape {like.shape} and dtype {like.dtype}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writable")
    return out


def _upstream(dy, x):
    dy = v.float_array("dy", dy)
    if dy.shape != x.shape:
        raise ValueError(f"dy must have x's shape {x.shape}, got {dy.shape}")
    return np.ascontiguousarray(dy, dtype=x.dtype)


def batchnorm_forward(x, gamma, beta, *, training: bool, running_mean=None, running_var=None,
                      eps: float = 1e-5, out=None):
    """Batch norm, per channel over N and spatial positions.

    Inputs:
    - x: (N, C) or (N, C, *spatial)
    - gamma, beta: (C,)
    - training: batch statistics if True, else running_mean / running_var (C,)
    - out: optional preallocated output, x's shape and dtype
    Returns a tuple of:
    - y: x's shape and dtype
    - mean, invstd: (C,) float64, the statistics used (for the backward and the
      running averages); var = 1 / invstd**2 - eps
    """
    x = _input(x, 2)
    C = x.shape[1]
    gamma, beta = _channel_vector("gamma", gamma, C), _channel_vector("beta", beta, C)
    eps = v.eps_value(eps, x.dtype)
    x3, y = _as3d(x), _output(out, x)
    if training:
        v.enough_values(x.size // C, f"input of shape {x.shape}")
        mean, invstd = _call("channel_forward", x.size, x3, gamma, beta, eps, _as3d(y), _nchunks(x3.shape[0]))
        _finite_after((mean, invstd), ("x", x))
        return y, mean, invstd
    if running_mean is None or running_var is None:
        raise ValueError("evaluation mode needs running_mean and running_var")
    mean = _channel_vector("running_mean", running_mean, C)
    var = _channel_vector("running_var", running_var, C)
    if (var < 0).any():
        raise ValueError("running_var must be >= 0 everywhere")
    v.finite("x", x)  # no reduction in this mode to catch it
    invstd = 1.0 / np.sqrt(var + eps)
    _call("channel_affine", x.size, x3, mean, invstd, gamma, beta, _as3d(y), _nchunks(x3.shape[0]))
    return y, mean, invstd


def batchnorm_backward(dy, x, gamma, mean, invstd, *, training: bool = True, out=None):
    """Gradients of batch norm, given the forward's x, gamma, mean and invstd.

    Returns (dx, dgamma, dbeta): dx in x's shape and dtype, the others (C,) float64.
    With training=False the statistics were constants (evaluation mode).
    """
    x = _input(x, 2)
    C = x.shape[1]
    dy = _upstream(dy, x)
    gamma = _channel_vector("gamma", gamma, C)
    mean, invstd = _channel_vector("mean", mean, C), _channel_vector("invstd", invstd, C)
    dx = _output(out, x)
    x3 = _as3d(x)
    dgamma, dbeta = _call("channel_backward", x.size, _as3d(dy), x3, mean, invstd, gamma, bool(training), _as3d(dx),
                                             _nchunks(x3.shape[0]))
    _finite_after((dgamma, dbeta), ("dy", dy), ("x", x))
    return dx, dgamma, dbeta


# The split batch norm below is what a synchronized batch norm needs: local
# statistics, exchanged and combined by the caller (normgrad.nn.distributed), then the
# elementwise passes with the global statistics.

def batchnorm_stats(x):
    """Per-channel mean and biased variance of x (N, C, *spatial) over N and the
    spatial axes: two (C,) float64 arrays, from x.size // C values each."""
    x = _input(x, 2)
    x3 = _as3d(x)
    mean, var = _call("channel_stats", x.size, x3, _nchunks(x3.shape[0]))
    _finite_after((mean, var), ("x", x))
    return mean, var


def batchnorm_normalize(x, mean, invstd, gamma, beta, *, out=None):
    """y = (x - mean) * invstd * gamma + beta per channel; x (N, C, *spatial), the rest (C,)."""
    x = _input(x, 2)
    C = x.shape[1]
    vecs = [_channel_vector(n, a, C) for n, a in
            (("mean", mean), ("invstd", invstd), ("gamma", gamma), ("beta", beta))]
    y = _output(out, x)
    _call("channel_affine", x.size, _as3d(x), *vecs, _as3d(y), _nchunks(x.shape[0]))
    return y


def batchnorm_grad_sums(dy, x, mean):
    """Per-channel sum(dy) and sum(dy * (x - mean)): two (C,) float64 arrays.

    Summed over every process of a synchronized batch norm they are dbeta and
    dgamma / invstd of the whole batch."""
    x = _input(x, 2)
    dy = _upstream(dy, x)
    mean = _channel_vector("mean", mean, x.shape[1])
    sums = _call("channel_grad_sums", x.size, _as3d(dy), _as3d(x), mean, _nchunks(x.shape[0]))
    _finite_after(sums, ("dy", dy), ("x", x))
    return sums


def batchnorm_grad_input(dy, x, mean, invstd, gamma, sum_dy, sum_dy_xmu, count: int, *, out=None):
    """dx of a training-mode batch norm whose statistics came from ``count`` values
    per channel (over all processes), given the sums from ``batchnorm_grad_sums``
    added over all processes:

        dx = gamma * invstd * (dy - sum_dy / count - (x - mean) * invstd**2 * sum_dy_xmu / count)

    x, dy: (N, C, *spatial); the rest (C,). Returns dx in x's shape and dtype.
    """
    x = _input(x, 2)
    C = x.shape[1]
    dy = _upstream(dy, x)
    mean, invstd, gamma, sum_dy, sum_dy_xmu = (_channel_vector(n, a, C) for n, a in (
        ("mean", mean), ("invstd", invstd), ("gamma", gamma), ("sum_dy", sum_dy), ("sum_dy_xmu", sum_dy_xmu)))
    count = v.integer_value("count", count)
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    dx = _output(out, x)
    _call("channel_grad_input", x.size, _as3d(dy), _as3d(x), mean, gamma * invstd, sum_dy / count,
          sum_dy_xmu * invstd**2 / count, _as3d(dx), _nchunks(x.shape[0]))
    return dx


def _groups(G, C) -> int:
    G = v.integer_value("G", G)
    if G < 1 or C % G:
        raise ValueError(f"G must be a positive divisor of the channel count C={C}, got G={G}")
    return G


def groupnorm_forward(x, gamma, beta, G, *, eps: float = 1e-5, out=None):
    """Group norm: statistics per example and group of C/G channels.

    Inputs: x (N, C, *spatial); gamma, beta (C,); G divides C.
    Returns y (x's shape, dtype) and mean, invstd of shape (N, G), float64.
    """
    x = _input(x, 2)
    N, C = x.shape[:2]
    G = _groups(G, C)
    gamma, beta = _channel_vector("gamma", gamma, C), _channel_vector("beta", beta, C)
    eps = v.eps_value(eps, x.dtype)
    y = _output(out, x)
    mean, invstd = np.empty((N, G)), np.empty((N, G))
    _call("row_forward", x.size, _as3d(x), gamma, beta, G, eps, _as3d(y), mean, invstd)
    _finite_after((mean, invstd), ("x", x))
    return y, mean, invstd


def groupnorm_backward(dy, x, gamma, G, mean, invstd, *, out=None):
    """Gradients of group norm. Returns (dx, dgamma (C,), dbeta (C,))."""
    x = _input(x, 2)
    N, C = x.shape[:2]
    G = _groups(G, C)
    dy = _upstream(dy, x)
    gamma = _channel_vector("gamma", gamma, C)
    mean = np.ascontiguousarray(v.param_vector("mean", mean, ((N, G),)), dtype=np.float64)
    invstd = np.ascontiguousarray(v.param_vector("invstd", invstd, ((N, G),)), dtype=np.float64)
    dx = _output(out, x)
    dgamma, dbeta = _call("row_backward", x.size, _as3d(dy), _as3d(x), gamma, G, mean, invstd, _as3d(dx), _nchunks(N))
    _finite_after((dgamma, dbeta), ("dy", dy), ("x", x))
    return dx, dgamma, dbeta


def _rows(x) -> np.ndarray:
    """(..., D) viewed as (R, D, 1): layer norm is group norm with one group, L = 1."""
    return x.reshape(-1, x.shape[-1], 1)


def layernorm_forward(x, gamma, beta, *, eps: float = 1e-5, out=None):
    """Layer norm over the last axis. x (..., D); gamma, beta (D,).

    Returns y (x's shape, dtype) and mean, invstd of shape (R, 1), R = x.size // D.
    """
    x = _input(x, 1)
    y = _output(out, x)
    y3, mean, invstd = groupnorm_forward(_rows(x), gamma, beta, 1, eps=eps, out=_rows(y))
    return y, mean, invstd


def layernorm_backward(dy, x, gamma, mean, invstd, *, out=None):
    """Gradients of layer norm over the last axis. Returns (dx, dgamma (D,), dbeta (D,))."""
    x = _input(x, 1)
    dy = _upstream(dy, x)
    dx = _output(out, x)
    _, dgamma, dbeta = groupnorm_backward(_rows(dy), _rows(x), gamma, 1, mean, invstd, out=_rows(dx))
    return dx, dgamma, dbeta


__all__ = [
    "backend",
    "use_numpy",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_stats",
    "batchnorm_normalize",
    "batchnorm_grad_sums",
    "batchnorm_grad_input",
    "groupnorm_forward",
    "groupnorm_backward",
    "layernorm_forward",
    "layernorm_backward",
]
