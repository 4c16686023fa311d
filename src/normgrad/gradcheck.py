"""Numeric gradients by centred differences, and the relative error to compare them.

CS231n-compatible. Every perturbed entry is put back, even if ``f`` raises.

``order=2`` (the default) is the classic centred difference,
(f(x+h) - f(x-h)) / 2h, truncation error O(h^2). ``order=4`` is the five-point
stencil, (8[f(x+h) - f(x-h)] - [f(x+2h) - f(x-2h)]) / 12h, truncation error
O(h^4): with h = 1e-3 its round-off is ~100x smaller than the default's at
h = 1e-5, which matters when checking gradients to 1e-8 relative.

Numeric gradients are meant for float64 inputs: in float32, x + h is rounded
and the step actually taken differs from h.
"""

from __future__ import annotations

from numbers import Real

import numpy as np

from .core.validate import float_array

# (step multiple, weight) pairs: derivative = sum(w * f(x + k h)) / h
_STENCILS = {
    2: ((1, 0.5), (-1, -0.5)),
    4: ((1, 8 / 12), (-1, -8 / 12), (2, -1 / 12), (-2, 1 / 12)),
}


def _derivative(f, x: np.ndarray, ix: tuple, h: float, order: int) -> np.ndarray:
    """d f(x) / d x[ix] by finite differences, leaving x[ix] as it was."""
    old = x[ix]
    total = 0.0
    try:
        for k, w in _STENCILS[order]:
            x[ix] = old + k * h
            total = total + w * np.array(f(x), dtype=np.float64, copy=True)
    finally:
        x[ix] = old
    return total / h


def _writable_float(x) -> np.ndarray:
    x = float_array("x", x)
    if not isinstance(x, np.ndarray) or not x.flags.writeable:
        raise TypeError("x must be a writable NumPy array: it is perturbed in place and restored")
    return x


def _order(order, h) -> int:
    if order not in _STENCILS:
        raise ValueError(f"order must be one of {sorted(_STENCILS)}, got {order!r}")
    if not (isinstance(h, Real) and 0 < h < np.inf):
        raise ValueError(f"h must be a finite number > 0, got {h!r}")
    return order


def eval_numerical_gradient(f, x, verbose: bool = False, h: float = 1e-5, *, order: int = 2) -> np.ndarray:
    """Numeric gradient of a scalar function ``f`` at ``x``.

    Inputs:
    - f: function taking x and returning a scalar
    - x: float array of any shape, perturbed in place one entry at a time
    - verbose: print each entry's gradient as it is computed
    - h: step of the difference
    - order: 2 (centred difference) or 4 (five-point stencil)
    Returns:
    - grad: array of x's shape and dtype
    """
    x, order = _writable_float(x), _order(order, h)
    grad = np.zeros(x.shape, dtype=np.float64)
    for ix in np.ndindex(*x.shape):
        d = _derivative(f, x, ix, h, order)
        if d.size != 1:
            raise ValueError(f"f must return a scalar, got an array of shape {d.shape}")
        grad[ix] = d.item()
        if verbose:
            print(ix, grad[ix])
    return grad.astype(x.dtype, copy=False)


def eval_numerical_gradient_array(f, x, df, h: float = 1e-5, *, order: int = 2) -> np.ndarray:
    """Numeric gradient of sum(f(x) * df) at ``x``, for array-valued ``f``.

    Inputs:
    - f: function taking x and returning an array of df's shape
    - x: float array of any shape, perturbed in place one entry at a time
    - df: upstream gradient of f's output
    - h: step of the difference
    - order: 2 (centred difference) or 4 (five-point stencil)
    Returns:
    - grad: array of x's shape and dtype
    """
    x, order = _writable_float(x), _order(order, h)
    df = np.asarray(df, dtype=np.float64)
    grad = np.zeros(x.shape, dtype=np.float64)
    for ix in np.ndindex(*x.shape):
        d = _derivative(f, x, ix, h, order)
        if d.shape != df.shape:
            raise ValueError(f"f returned shape {d.shape}, but df has shape {df.shape}")
        grad[ix] = np.sum(d * df)
    return grad.astype(x.dtype, copy=False)


def grad_check_sparse(f, x, analytic_grad, num_checks: int = 10, h: float = 1e-5, seed=None) -> list[float]:
    """Compare ``analytic_grad`` with centred differences of scalar ``f`` at ``num_checks``
    random entries of x (NumPy's global generator unless ``seed``), printing each line as
    CS231n's does. Returns the relative errors."""
    x = _writable_float(x)
    rng = np.random if seed is None else np.random.default_rng(seed)
    errors = []
    for _ in range(num_checks):
        ix = tuple(int(rng.integers(n)) if seed is not None else int(rng.randint(n)) for n in x.shape)
        numeric = _derivative(f, x, ix, h, 2).item()
        analytic = float(np.asarray(analytic_grad)[ix])
        err = abs(numeric - analytic) / max(1e-12, abs(numeric) + abs(analytic))
        errors.append(err)
        print(f"numerical: {numeric:f} analytic: {analytic:f}, relative error: {err:e}")
    return errors


def eval_numerical_gradient_blobs(f, inputs, output, h: float = 1e-5) -> list[np.ndarray]:
    """Numeric gradients for functions of "blobs" (objects with ``vals`` and ``diffs``, as in
    CS231n's old layer API): ``f(*inputs, output)`` fills ``output.vals``; returns, per input,
    the gradient of sum(output.vals * output.diffs) with respect to its vals."""
    def values(_):
        f(*inputs, output)
        return np.array(output.vals, dtype=np.float64, copy=True)

    return [eval_numerical_gradient_array(values, blob.vals, output.diffs, h) for blob in inputs]


def eval_numerical_gradient_net(net, inputs, output, h: float = 1e-5) -> list[np.ndarray]:
    """``eval_numerical_gradient_blobs`` for a net object with ``forward()``."""
    return eval_numerical_gradient_blobs(lambda *args: net.forward(), inputs, output, h=h)


def rel_error(x, y) -> float:
    """max(|x - y| / max(1e-8, |x| + |y|)), elementwise, as CS231n defines it.

    Unlike CS231n's, it refuses arrays of different shapes instead of
    broadcasting them (a (1, D) dgamma against a (D,) one is a bug to report).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"rel_error needs arrays of one shape, got {x.shape} and {y.shape}")
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


__all__ = ["eval_numerical_gradient", "eval_numerical_gradient_array", "rel_error", "grad_check_sparse",
           "eval_numerical_gradient_blobs", "eval_numerical_gradient_net"]
