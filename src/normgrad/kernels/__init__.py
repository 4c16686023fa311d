"""Fused normalization kernels: the fast path, chosen automatically.

Numba kernels (compiled on first use and cached on disk) when Numba is installed;
otherwise, or when forced, the same kernels in NumPy. Force the NumPy path with the
environment variable ``NORMGRAD_KERNELS=numpy`` or ``use_numpy(True)``;
``backend()`` says which is in use.

Every norm is read from its ``NormSpec`` (``normgrad.core.specs``): statistics
across the batch (batch norm) run on the *channel* kernels over x viewed as
(N, C, L); statistics per sample (layer, group norm) on the *row* kernels over x
viewed as (N*G, C/G, L) (see ``_numba.py``). The functions keep x's dtype (float32
stays float32, elementwise work too; statistics are accumulated in float64) and keep
no array of x's size between forward and backward: a training forward returns
``NormStats`` (mean, biased var, invstd; float64, (C,) or (N, G)) and the backward
recomputes xhat from x.

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

import contextlib
import functools
import os
import threading

import numpy as np

from ..core import validate as v
from ..core.specs import BATCH, GROUP, LAYER, NormSpec
from ..core.stats import NormStats, split_mean
from . import _checks as check
from . import _numpy

try:
    from . import _numba
    from ._fpmode import flushing_denormals, set_flush_denormal
except ImportError:  # Numba not installed: the NumPy path only, and no switch for subnormals
    _numba = None

    def set_flush_denormal(enabled: bool) -> bool:
        """Needs Numba: does nothing and returns False here."""
        return False

    def flushing_denormals():
        return contextlib.nullcontext(False)

_force_numpy = os.environ.get("NORMGRAD_KERNELS", "").lower() == "numpy"


def use_numpy(flag: bool = True) -> None:
    """Force (or stop forcing) the NumPy path for every kernel call."""
    global _force_numpy
    _force_numpy = bool(flag)


def backend() -> str:
    """'numba' or 'numpy': the implementation the next call will use."""
    return "numpy" if _force_numpy or _numba is None else "numba"


# Calls on fewer elements than these run the serial variant on the calling thread, in
# one chunk: a parallel region costs more than it saves there, and in a training loop
# the OpenMP workers and BLAS's threads spin-wait after each call and fight over the
# cores. Measured on a 2-core machine with benchmarks/threshold.py: the parallel
# variants win from about 2**17 elements (batch norm) and 2**15 (layer norm) when timed
# alone; the thresholds sit a little higher, for the spin-waits of a real training loop.
PARALLEL_MIN_SIZE = {"channel": 1 << 17, "row": 1 << 16}
# Inside a PyTorch model, torch's own OpenMP workers spin on the cores after each of its
# parallel operations, so a parallel kernel started then shares its cores with them: a
# (256, 512) batch norm between two torch matrix products ran 1.7x slower in parallel
# than on the calling thread. ``sharing_cores_with_torch()`` (normgrad.torch's operators
# run in it) raises the thresholds to this.
PARALLEL_MIN_SIZE_BESIDE_TORCH = 1 << 20
NCHUNKS = 16  # work items of a parallel loop: fixed, so sums do not depend on the thread count
_beside_torch = threading.local()


@contextlib.contextmanager
def sharing_cores_with_torch():
    """Calls in this block go parallel only from ``PARALLEL_MIN_SIZE_BESIDE_TORCH``
    elements (this thread only)."""
    before = getattr(_beside_torch, "on", False)
    _beside_torch.on = True
    try:
        yield
    finally:
        _beside_torch.on = before


def _kernel(name: str, size: int):
    """(kernel, chunks) for ``name`` on ``size`` elements. The chunks depend on the size
    only, never on the thread count or the variant, so a result is the same on 1 thread
    or 32, beside torch or not."""
    chunked = size >= PARALLEL_MIN_SIZE[name.split("_", 1)[0]]
    if _force_numpy or _numba is None:
        return getattr(_numpy, name), NCHUNKS
    if not chunked:
        return _numba.SERIAL[name], 1
    if getattr(_beside_torch, "on", False) and size < PARALLEL_MIN_SIZE_BESIDE_TORCH:
        return functools.partial(_on_one_thread, _numba.PARALLEL[name]), NCHUNKS
    return _numba.PARALLEL[name], NCHUNKS


def _on_one_thread(kernel, *args):
    """The parallel variant (same compiled code, same chunks, so the same sums) run by
    the calling thread alone: Numba's thread count is per calling thread."""
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(threads)


def _as3d(spec: NormSpec, a: np.ndarray, G: int | None = None) -> np.ndarray:
    """The spec's (N, G, K, L) view as (N, G*K, L) for the channel kernels, (N*G, K, L) for the row ones."""
    N, groups, K, L = spec.view(a.shape, G)
    return a.reshape(N, groups * K, L) if spec.across == "batch" else a.reshape(N * groups, K, L)


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
    x = check.data(x, 1 if spec.features_last else 2)
    C = spec.channels(x.shape)
    gamma, beta = check.vector("gamma", gamma, C), check.vector("beta", beta, C)
    eps = v.eps_value(eps, x.dtype)
    y = check.output(out, x)
    if spec.across == "batch":
        return y, _batch_forward(x, gamma, beta, eps, running, y)
    groups = spec.num_groups(C, G)
    x3 = _as3d(spec, x, groups)
    R = x3.shape[0]
    mean, var, invstd = np.empty(R), np.empty(R), np.empty(R)
    kernel, chunks = _kernel("row_forward", x.size)
    kernel(x3, gamma.astype(x.dtype), beta.astype(x.dtype), groups, eps, spec.centered, _as3d(spec, y, groups), mean,
           var, invstd, chunks)
    check.finite_after((mean, var), ("x", x))
    shape = (R // groups, groups)
    return y, NormStats(mean.reshape(shape), var.reshape(shape), invstd.reshape(shape))


def _batch_forward(x, gamma, beta, eps, running, y) -> NormStats:
    C = x.shape[1]
    x3 = x.reshape(x.shape[0], C, -1)
    if running is None:
        v.enough_values(x.size // C, f"input of shape {x.shape}")
        kernel, chunks = _kernel("channel_forward", x.size)
        mean, var, invstd = kernel(x3, gamma, beta, eps, y.reshape(x3.shape), chunks)
        check.finite_after((mean, var), ("x", x))
        return NormStats(mean, var, invstd)
    running_var = check.vector("running_var", running[1], C)
    if (running_var < 0).any():
        raise ValueError("running_var must be >= 0 everywhere")
    stats = NormStats.of(check.vector("running_mean", running[0], C), running_var, eps)
    v.finite("x", x)  # no reduction in this mode to catch it
    _normalize(x, stats.mean, stats.invstd, gamma, beta, y)
    return stats


def _normalize(x, mean, invstd, gamma, beta, y) -> None:
    """y = (x - mean) * invstd * gamma + beta per channel, elementwise in x's dtype."""
    hi, lo = split_mean(mean, x.dtype)
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    kernel, chunks = _kernel("channel_affine", x.size)
    kernel(x3, hi, lo, (invstd * gamma).astype(x.dtype), beta.astype(x.dtype), y.reshape(x3.shape), chunks)


def norm_backward(spec: NormSpec, dy, x, gamma, stats, *, G: int | None = None, batch_stats: bool = True,
                  out=None):
    """Gradients of ``norm_forward``, given its x, gamma and NormStats.

    ``batch_stats=False``: the statistics were constants (batch norm in evaluation
    mode). Returns (dx, dgamma, dbeta): dx in x's shape and dtype, the others (C,)
    float64.
    """
    x = check.data(x, 1 if spec.features_last else 2)
    dy = check.upstream(dy, x)
    C = spec.channels(x.shape)
    gamma = check.vector("gamma", gamma, C)
    if spec.across == "batch":
        stats = check.stats(stats, (C,))
        dx = check.output(out, x)
        x3 = x.reshape(x.shape[0], C, -1)
        kernel, chunks = _kernel("channel_backward", x.size)
        dgamma, dbeta = kernel(dy.reshape(x3.shape), x3, gamma, stats.mean, stats.invstd, bool(batch_stats),
                               dx.reshape(x3.shape), chunks)
        check.finite_after((dgamma, dbeta), ("dy", dy), ("x", x))
        return dx, dgamma, dbeta
    groups = spec.num_groups(C, G)
    x3 = _as3d(spec, x, groups)
    stats = check.stats(stats, (x3.shape[0] // groups, groups))
    dx = check.output(out, x)
    kernel, chunks = _kernel("row_backward", x.size)
    dgamma, dbeta = kernel(_as3d(spec, dy, groups), x3, gamma.astype(x.dtype), groups, spec.centered,
                           stats.mean.reshape(-1), stats.invstd.reshape(-1), _as3d(spec, dx, groups), chunks)
    check.finite_after((dgamma, dbeta), ("dy", dy), ("x", x))
    return dx, dgamma, dbeta


def _grad_sums(dy, x, mean):
    hi, lo = split_mean(mean, x.dtype)
    kernel, chunks = _kernel("channel_grad_sums", x.size)
    sums = kernel(_as3d(BATCH, dy), _as3d(BATCH, x), hi, lo, chunks)
    check.finite_after(sums, ("dy", dy), ("x", x))
    return sums


def _grad_input(dy, x, mean, invstd, gamma, sum_dy, sum_dy_xmu, count, out):
    """dx = gamma * invstd * (dy - sum_dy / count - (x - mean) * invstd**2 * sum_dy_xmu / count)."""
    dx = check.output(out, x)
    hi, lo = split_mean(mean, x.dtype)
    coefs = [(gamma * invstd), sum_dy / count, sum_dy_xmu * invstd**2 / count]
    kernel, chunks = _kernel("channel_grad_input", x.size)
    kernel(_as3d(BATCH, dy), _as3d(BATCH, x), hi, lo, *(c.astype(x.dtype) for c in coefs), _as3d(BATCH, dx), chunks)
    return dx


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
    x = check.data(x, 2)
    kernel, chunks = _kernel("channel_stats", x.size)
    mean, var = kernel(_as3d(BATCH, x), chunks)
    check.finite_after((mean, var), ("x", x))
    return mean, var


def batchnorm_normalize(x, mean, invstd, gamma, beta, *, out=None):
    """y = (x - mean) * invstd * gamma + beta per channel; x (N, C, *spatial), the rest (C,)."""
    x = check.data(x, 2)
    C = x.shape[1]
    mean, invstd, gamma, beta = (check.vector(n, a, C) for n, a in
                                 (("mean", mean), ("invstd", invstd), ("gamma", gamma), ("beta", beta)))
    y = check.output(out, x)
    _normalize(x, mean, invstd, gamma, beta, y)
    return y


def batchnorm_grad_sums(dy, x, mean):
    """Per-channel sum(dy) and sum(dy * (x - mean)): two (C,) float64 arrays.

    Summed over every process of a synchronized batch norm they are dbeta and
    dgamma / invstd of the whole batch."""
    x = check.data(x, 2)
    return _grad_sums(check.upstream(dy, x), x, check.vector("mean", mean, x.shape[1]))


def batchnorm_grad_input(dy, x, mean, invstd, gamma, sum_dy, sum_dy_xmu, count: int, *, out=None):
    """dx of a training-mode batch norm whose statistics came from ``count`` values
    per channel (over all processes), given the sums from ``batchnorm_grad_sums``
    added over all processes:

        dx = gamma * invstd * (dy - sum_dy / count - (x - mean) * invstd**2 * sum_dy_xmu / count)

    x, dy: (N, C, *spatial); the rest (C,). Returns dx in x's shape and dtype.
    """
    x = check.data(x, 2)
    C = x.shape[1]
    dy = check.upstream(dy, x)
    mean, invstd, gamma, sum_dy, sum_dy_xmu = (check.vector(n, a, C) for n, a in (
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


def adam_step(w, dw, m, v, learning_rate, beta1, beta2, epsilon, t):
    """One Adam update in one pass over the arrays (``normgrad.optim.adam``'s fast path):
    returns new (next_w, m, v) of w's shape and dtype; the inputs are not modified.
    w, dw, m, v: arrays of one shape and float dtype; t: the update's number (from 1)."""
    arrays = [np.ascontiguousarray(a, dtype=w.dtype).reshape(-1) for a in (w, dw, m, v)]
    out = [np.empty_like(arrays[0]) for _ in range(3)]
    if _force_numpy or _numba is None:
        _numpy.adam_step(*arrays, learning_rate, beta1, beta2, epsilon, t, *out)
    else:
        scalar = w.dtype.type
        _numba.adam_step(*arrays, scalar(beta1), scalar(beta2), scalar(epsilon), scalar(learning_rate / (1 - beta1**t)),
                         scalar(1 / (1 - beta2**t)), np.finfo(w.dtype).tiny, *out)
    return tuple(a.reshape(np.shape(w)) for a in out)


__all__ = [
    "adam_step",
    "flushing_denormals",
    "set_flush_denormal",
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
