"""Input checks shared by every public function.

Each check raises a ``TypeError`` (wrong kind of thing: not an array, integer or
object data, not our cache) or a ``ValueError`` (right kind, wrong value: shape,
rank, NaN/Inf, unknown mode, eps <= 0, ...) whose message names the argument,
what it got and what was expected. NaN/Inf raise ``NonFiniteError``, a
``ValueError``, so a training loop can tell divergence from a wrong call.

Data (x, dout) must be float32 or float64. Parameters (gamma, beta, weights,
running statistics) may also be integer arrays: they are promoted to the data's
float dtype, as NumPy arithmetic would promote them. Nothing here modifies its
input; only that promotion copies.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

MODES = ("train", "test")


class NonFiniteError(ValueError):
    """An array holds NaN or Inf (in training: usually divergence)."""


FLOAT_DTYPES = (np.float32, np.float64)


def float_array(name: str, a, ndim: int | None = None) -> np.ndarray:
    """Return ``a`` as a float32 or float64 ndarray, or raise naming ``name``.

    Lists and other array-likes are accepted; integer, bool, complex and object
    dtypes are refused (an integer array would silently truncate the maths), and
    so are float16 and long double: their statistics are not computed to their
    precision here, so they must be cast by the caller, knowingly.
    """
    try:
        arr = np.asarray(a)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular array, got {type(a).__name__}: {err}") from None
    if arr.dtype.type not in FLOAT_DTYPES:
        hint = " (cast float16 / long double to float32 or float64)" if np.issubdtype(arr.dtype, np.floating) else ""
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {arr.dtype}{hint}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(
            f"{name} must be {ndim}-D, got {arr.ndim}-D array of shape {arr.shape}"
        )
    return arr


def finite(name: str, arr: np.ndarray) -> None:
    """Raise if ``arr`` holds NaN or Inf, saying how many and where the first is."""
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise NonFiniteError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or Inf), "
            f"first at index {first}"
        )


def checked_input(name: str, a, ndim: int, min_ndim: int | None = None) -> np.ndarray:
    """A non-empty, finite floating-point array of rank ``ndim`` (or, given ``min_ndim``,
    of rank ``min_ndim`` or more; ``ndim`` then only names the layout in the message)."""
    if min_ndim is None:
        arr = float_array(name, a, ndim)
    else:
        arr = float_array(name, a)
        if arr.ndim < min_ndim:
            raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    finite(name, arr)
    return arr


def param_array(name: str, a, dtype=None, ndim: int | None = None) -> np.ndarray:
    """A float parameter (gamma, beta, weights, biases): float32/float64 as given; an
    integer array promoted to ``dtype`` (the data's float dtype; float64 if None), as
    NumPy arithmetic would. Bool, complex, object and other float widths are refused
    by name; ``ndim``, if given, is checked."""
    try:
        arr = np.asarray(a)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular array, got {type(a).__name__}: {err}") from None
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float64 if dtype is None else dtype)
    return float_array(name, arr, ndim)


def param_vector(name: str, a, shapes: tuple[tuple[int, ...], ...], dtype=None) -> np.ndarray:
    """A finite float parameter (gamma, beta, running stats) with one of ``shapes``;
    integer arrays are promoted to ``dtype`` (see ``param_array``)."""
    arr = param_array(name, a, dtype)
    if arr.shape not in shapes:
        wanted = " or ".join(str(s) for s in shapes)
        raise ValueError(f"{name} must have shape {wanted}, got {arr.shape}")
    finite(name, arr)
    return arr


def real_value(name: str, value) -> float:
    """A real number given as a Python or NumPy scalar or a 0-d array."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def eps_value(eps, dtype=np.float64) -> float:
    """eps > 0, and small and large enough that sqrt(eps) and 1/sqrt(eps) exist in ``dtype``."""
    eps = real_value("eps", eps)
    info = np.finfo(dtype)
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a finite number > 0, got {eps}")
    if not float(info.tiny) <= eps <= 1e30:
        raise ValueError(f"eps must lie in [{float(info.tiny):.3g}, 1e30] for {np.dtype(dtype).name} data, got {eps}")
    return eps


def momentum_value(momentum) -> float:
    momentum = real_value("momentum", momentum)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
    return momentum


def positive_integer(name: str, value) -> int:
    """A size or count: an int >= 1 (bool refused), else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def normalized_shape_value(normalized_shape) -> tuple[int, ...]:
    """``normalized_shape`` (an int or a sequence of them) as a tuple of positive sizes."""
    shape = (normalized_shape,) if isinstance(normalized_shape, Integral) else tuple(normalized_shape)
    if not shape or any(not isinstance(s, Integral) or isinstance(s, bool) or s < 1 for s in shape):
        raise ValueError(f"normalized_shape must be positive sizes, got {normalized_shape!r}")
    return tuple(int(s) for s in shape)


def trailing_shape(shape: tuple[int, ...], normalized_shape: tuple[int, ...], min_leading: int = 0) -> None:
    """``shape`` must end with ``normalized_shape`` after at least ``min_leading`` axes."""
    k = len(normalized_shape)
    if tuple(shape[len(shape) - k:]) != tuple(normalized_shape) or len(shape) < k + min_leading:
        raise ValueError(f"expected input of shape (..., {', '.join(map(str, normalized_shape))}), "
                         f"got {tuple(shape)}")


def integer_value(name: str, value) -> int:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    return int(value)


def mode_value(param: dict, name: str = "bn_param") -> str:
    if not isinstance(param, dict):
        raise TypeError(f"{name} must be a dict, got {type(param).__name__}")
    if "mode" not in param:
        raise ValueError(f"{name}['mode'] is required: one of {MODES}")
    mode = param["mode"]
    if mode not in MODES:
        raise ValueError(f"{name}['mode'] must be one of {MODES}, got {mode!r}")
    return mode


def param_dict(param, name: str) -> dict:
    if param is None:
        return {}
    if not isinstance(param, dict):
        raise TypeError(f"{name} must be a dict, got {type(param).__name__}")
    return param


def mask_array(mask, x_shape: tuple[int, ...], channel_axis: int) -> np.ndarray:
    """A padding mask: a bool array (True = valid) of x's shape without its channel axis
    (``channel_axis``: 1, or -1 for features-last data)."""
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        raise TypeError(f"mask must be a bool array (True = valid position), got dtype {arr.dtype}")
    axis = channel_axis % len(x_shape)
    want = tuple(x_shape[:axis]) + tuple(x_shape[axis + 1:])
    if arr.shape != want:
        raise ValueError(f"mask must have the input's shape without its channel axis, {want}, got {arr.shape}")
    return arr


def enough_values(count: int, what: str) -> None:
    """Training statistics need at least two values per channel."""
    if count < 2:
        raise ValueError(
            f"expected more than 1 value per channel when training, got {count} "
            f"({what}); batch statistics of a single value are undefined"
        )


def upstream(dout, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The upstream gradient must match the forward output's shape."""
    arr = float_array("dout", dout)
    if arr.shape != shape:
        raise ValueError(f"dout must have the forward output's shape {shape}, got {arr.shape}")
    finite("dout", arr)
    return arr.astype(dtype, copy=False)


def cache_of(cache, cls, func: str):
    if not isinstance(cache, cls):
        raise TypeError(
            f"cache must be the {cls.__name__} returned by {func}, got {type(cache).__name__}"
        )
    return cache
