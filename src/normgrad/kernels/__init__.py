"""Fused normalization kernels: the fast path, chosen automatically.

Numba kernels (parallel, compiled on first use and cached on disk) when Numba
is installed; otherwise, or when forced, the same kernels in NumPy. Force the
NumPy path with the environment variable ``NORMGRAD_KERNELS=numpy`` or
``use_numpy(True)``; ``backend()`` says which is in use.

Every norm is read from its ``NormSpec`` (``normgrad.core.specs``): statistics
across the batch (batch norm) run on the *channel* kernels over x viewed as
(N, C, L); statistics per sample (layer, group norm) on the *row* kernels over
x viewed as (N, C, L) with G groups. The functions keep x's dtype (float32 stays
float32; statistics are accumulated in float64) and keep no array of x's size
between forward and backward: a training forward returns ``NormStats`` (mean,
biased var, invstd; float64, (C,) or (N, G)) and the backward recomputes xhat
from x.

Checks: every function checks shapes, dtypes and eps like ``normgrad.functional``.
NaN/Inf are caught where a function reduces over its input (the forwards,
backwards, ``batchnorm_stats`` and ``batchnorm_grad_sums``), at no extra pass.
The elementwise halves of the split batch norm (``batchnorm_normalize``,
``batchnorm_grad_input``) do not scan for them: in a synchronized step their
inputs have just passed ``batchnorm_stats`` / ``batchnorm_grad_sums``.

Shapes: batch norm takes x (N, C) or (N, C, *spatial); group norm x (N, C,
*spatial); layer norm x (..., D) normalized over the last axis.
"""

from __future__ import annotations

import os

import numpy as np

from ..core import validate as v
from ..core.specs import BATCH, GROUP, LAYER, NormSpec
from ..core.stats import NormStats
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
    raise v.NonFiniteError("the statistics overflow float64: rescale the input")


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


def _stats(stats, shape: tuple[int, ...]) -> NormStats:
    """The backward's NormStats, each field float64 of ``shape``."""
    if not isinstance(stats, tuple) or len(stats) != 3:
        raise TypeError(f"stats must be the NormStats (mean, var, invstd) the forward returned, got "
                        f"{type(stats).__name__}")
    return NormStats(*(np.ascontiguousarray(v.param_vector(name, a, (shape,)), dtype=np.float64)
                       for name, a in zip(NormStats._fields, stats)))


def _as3d(spec: NormSpec, a: np.ndarray, G: int | None = None) -> np.ndarray:
    """The spec's (N, G, K, L) view with the channels merged: (N, C, L)."""
    N, groups, K, L = spec.view(a.shape, G)
    return a.reshape(N, groups * K, L)


# ----------------------------------------------------------------------------- any norm


def norm_forward(spec: NormSpec, x, gamma, beta, *, G: int | None = None, eps: float = 1e-5,
                 running: tuple | None = None, out=None):
    """Normalize x as ``spec`` says, scale by gamma and shift by beta (each (C,)).

    - G: groups, for specs that take them (group norm)
    - running: (mean, var), each (C,), to use instead of batch statistics
      (batch norm in evaluation mode)
    - out: optional preallocated output, x's shape and dtype
    Returns y (x's shape and dtype) and the NormStats used: (C,) fields for
    batch statistics, (N, G) per sample.
    """
    x = _input(x, 1 if spec.features_last else 2)
    C = spec.channels(x.shape)
    gamma, beta = _channel_vector("gamma", gamma, C), _channel_vector("beta", beta, C)
    eps = v.eps_value(eps, x.dtype)
    y = _output(out, x)
    if spec.across == "batch":
        return y, _batch_forward(x, gamma, beta, eps, running, y)
    groups = spec.num_groups(C, G)
    N = spec.view(x.shape, groups)[0]
    mean, var, invstd = np.empty((N, groups)), np.empty((N, groups)), np.empty((N, groups))
    _call("row_forward", x.size, _as3d(spec, x, groups), gamma, beta, groups, eps, _as3d(spec, y, groups),
          mean, var, invstd)
    _finite_after((mean, var), ("x", x))
    return y, NormStats(mean, var, invstd)


def _batch_forward(x, gamma, beta, eps, running, y) -> NormStats:
    C = x.shape[1]
    x3 = _as3d(BATCH, x)
    if running is None:
        v.enough_values(x.size // C, f"input of shape {x.shape}")
        mean, var = _call("channel_stats", x.size, x3, _nchunks(x3.shape[0]))
        _finite_after((mean, var), ("x", x))
        stats = NormStats.of(mean, var, eps)
    else:
        running_var = _channel_vector("running_var", running[1], C)
        if (running_var < 0).any():
            raise ValueError("running_var must be >= 0 everywhere")
        stats = NormStats.of(_channel_vector("running_mean", running[0], C), running_var, eps)
        v.finite("x", x)  # no reduction in this mode to catch it
    _call("channel_affine", x.size, x3, stats.mean, stats.invstd, gamma, beta, _as3d(BATCH, y), _nchunks(x3.shape[0]))
    return stats


def norm_backward(spec: NormSpec, dy, x, gamma, stats, *, G: int | None = None, batch_stats: bool = True,
                  out=None):
    """Gradients of ``norm_forward``, given its x, gamma and NormStats.

    ``batch_stats=False``: the statistics were constants (batch norm in evaluation
    mode). Returns (dx, dgamma, dbeta): dx in x's shape and dtype, the others (C,)
    float64.
    """
    x = _input(x, 1 if spec.features_last else 2)
    dy = _upstream(dy, x)
    C = spec.channels(x.shape)
    gamma = _channel_vector("gamma", gamma, C)
    if spec.across == "batch":
        stats = _stats(stats, (C,))
        sum_dy, sum_dy_xmu = batchnorm_grad_sums(dy, x, stats.mean)
        paths = (sum_dy, sum_dy_xmu) if batch_stats else (np.zeros(C), np.zeros(C))
        dx = _grad_input(dy, x, stats.mean, stats.invstd, gamma, *paths, x.size // C, out)
        return dx, sum_dy_xmu * stats.invstd, sum_dy
    groups = spec.num_groups(C, G)
    N = spec.view(x.shape, groups)[0]
    stats = _stats(stats, (N, groups))
    dx = _output(out, x)
    dgamma, dbeta = _call("row_backward", x.size, _as3d(spec, dy, groups), _as3d(spec, x, groups), gamma, groups,
                          stats.mean, stats.invstd, _as3d(spec, dx, groups), _nchunks(N))
    _finite_after((dgamma, dbeta), ("dy", dy), ("x", x))
    return dx, dgamma, dbeta


# ----------------------------------------------------------------------------- batch norm


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
    - stats: NormStats (mean, var, invstd), each (C,) float64: the statistics used
      (for the backward and the running averages)
    """
    if not training and (running_mean is None or running_var is None):
        raise ValueError("evaluation mode needs running_mean and running_var")
    return norm_forward(BATCH, x, gamma, beta, eps=eps, running=None if training else (running_mean, running_var),
                        out=out)


def batchnorm_backward(dy, x, gamma, stats, *, training: bool = True, out=None):
    """Gradients of batch norm, given the forward's x, gamma and stats (NormStats, (C,) each).

    Returns (dx, dgamma, dbeta): dx in x's shape and dtype, the others (C,) float64.
    With training=False the statistics were constants (evaluation mode).
    """
    return norm_backward(BATCH, dy, x, gamma, stats, batch_stats=bool(training), out=out)


# The split batch norm below is what a synchronized batch norm needs: local
# statistics, exchanged and combined by the caller (normgrad.core.sync), then the
# elementwise passes with the global statistics.

def batchnorm_stats(x):
    """Per-channel mean and biased variance of x (N, C, *spatial) over N and the
    spatial axes: two (C,) float64 arrays, from x.size // C values each."""
    x = _input(x, 2)
    x3 = _as3d(BATCH, x)
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
    _call("channel_affine", x.size, _as3d(BATCH, x), *vecs, _as3d(BATCH, y), _nchunks(x.shape[0]))
    return y


def batchnorm_grad_sums(dy, x, mean):
    """Per-channel sum(dy) and sum(dy * (x - mean)): two (C,) float64 arrays.

    Summed over every process of a synchronized batch norm they are dbeta and
    dgamma / invstd of the whole batch."""
    x = _input(x, 2)
    dy = _upstream(dy, x)
    mean = _channel_vector("mean", mean, x.shape[1])
    sums = _call("channel_grad_sums", x.size, _as3d(BATCH, dy), _as3d(BATCH, x), mean, _nchunks(x.shape[0]))
    _finite_after(sums, ("dy", dy), ("x", x))
    return sums


def _grad_input(dy, x, mean, invstd, gamma, sum_dy, sum_dy_xmu, count, out):
    """dx = gamma * invstd * (dy - sum_dy / count - (x - mean) * invstd**2 * sum_dy_xmu / count)."""
    dx = _output(out, x)
    _call("channel_grad_input", x.size, _as3d(BATCH, dy), _as3d(BATCH, x), mean, gamma * invstd, sum_dy / count,
          sum_dy_xmu * invstd**2 / count, _as3d(BATCH, dx), _nchunks(x.shape[0]))
    return dx


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
    return _grad_input(dy, x, mean, invstd, gamma, sum_dy, sum_dy_xmu, count, out)


# ----------------------------------------------------------------------------- per-sample norms


def groupnorm_forward(x, gamma, beta, G, *, eps: float = 1e-5, out=None):
    """Group norm: statistics per example and group of C/G channels.

    Inputs: x (N, C, *spatial); gamma, beta (C,); G divides C.
    Returns y (x's shape, dtype) and NormStats, each field (N, G) float64.
    """
    return norm_forward(GROUP, x, gamma, beta, G=G, eps=eps, out=out)


def groupnorm_backward(dy, x, gamma, G, stats, *, out=None):
    """Gradients of group norm. Returns (dx, dgamma (C,), dbeta (C,))."""
    return norm_backward(GROUP, dy, x, gamma, stats, G=G, out=out)


def layernorm_forward(x, gamma, beta, *, eps: float = 1e-5, out=None):
    """Layer norm over the last axis. x (..., D); gamma, beta (D,).

    Returns y (x's shape, dtype) and NormStats, each field (R, 1), R = x.size // D.
    """
    return norm_forward(LAYER, x, gamma, beta, eps=eps, out=out)


def layernorm_backward(dy, x, gamma, stats, *, out=None):
    """Gradients of layer norm over the last axis. Returns (dx, dgamma (D,), dbeta (D,))."""
    return norm_backward(LAYER, dy, x, gamma, stats, out=out)


__all__ = [
    "backend",
    "use_numpy",
    "NormStats",
    "norm_forward",
    "norm_backward",
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
