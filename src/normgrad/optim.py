"""First-order update rules, CS231n-compatible: ``rule(w, dw, config) -> (next_w, config)``.

``config`` holds the hyperparameters and the rule's state (velocity, moments);
missing entries get their defaults on the first call. Every rule checks all of its
input (w and dw: real arrays of one shape; each hyperparameter in its range; each
state array in w's shape) before it writes anything into ``config``, so a refused
call leaves ``config`` as it was. ``check_config(rule, config)`` runs the
hyperparameter checks alone (the Solver does, before training starts).
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from . import kernels

# Each rule's hyperparameters: name -> (default, lowest allowed, bound it must stay below)
_RATE = (0.0, math.inf)
_FRACTION = (0.0, 1.0)
HYPERPARAMETERS = {
    "sgd": {"learning_rate": (1e-2, *_RATE)},
    "sgd_momentum": {"learning_rate": (1e-2, *_RATE), "momentum": (0.9, *_FRACTION)},
    "rmsprop": {"learning_rate": (1e-2, *_RATE), "decay_rate": (0.99, *_FRACTION), "epsilon": (1e-8, *_RATE)},
    "adam": {"learning_rate": (1e-3, *_RATE), "beta1": (0.9, *_FRACTION), "beta2": (0.999, *_FRACTION),
             "epsilon": (1e-8, *_RATE)},
}
STATE = {"sgd": (), "sgd_momentum": ("velocity",), "rmsprop": ("cache",), "adam": ("m", "v")}


def _rule_name(rule) -> str | None:
    """The name of one of normgrad's rules, given as a name or as the function; None for another."""
    if isinstance(rule, str):
        return rule if rule in HYPERPARAMETERS else None
    return next((name for name, fn in RULES.items() if fn is rule), None)


def check_config(rule, config) -> None:
    """Raise TypeError/ValueError naming the entry of ``config`` that ``rule`` (a name in
    ``RULES`` or one of its functions) would refuse; changes nothing. Another rule's
    config is only checked to be a dict."""
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    name = _rule_name(rule)
    if name is None or config is None:
        return
    for key, (_, low, high) in HYPERPARAMETERS[name].items():
        if key not in config:
            continue
        value = config[key]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
            raise TypeError(f"{name}: config[{key!r}] must be a real number, got {type(value).__name__} {value!r}")
        if not (low <= float(value) < high):
            upper = "" if high == math.inf else f" and below {high}"
            raise ValueError(f"{name}: config[{key!r}] must be finite, at least {low}{upper}, got {value!r}")
    if "t" in config:
        t = config["t"]
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, Integral) or t < 0:
            raise ValueError(f"{name}: config['t'] must be a non-negative integer, got {t!r}")


def _checked(rule: str, w, dw, config) -> tuple[np.ndarray, np.ndarray, dict]:
    """(w, dw, config with its defaults filled in), after checking all of them; ``config``
    is changed only once every check has passed."""
    check_config(rule, config)
    w, dw = np.asarray(w), np.asarray(dw)
    for label, a in (("w", w), ("dw", dw)):
        if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise TypeError(f"{rule}: {label} must be a real (float or integer) array, got dtype {a.dtype}")
    if dw.shape != w.shape:
        raise ValueError(f"{rule}: dw has shape {dw.shape}, w has shape {w.shape}; they must be equal")
    config = {} if config is None else config
    for key in STATE[rule]:
        if key in config:
            state = config[key]
            if not isinstance(state, np.ndarray) or state.shape != w.shape:
                got = state.shape if isinstance(state, np.ndarray) else type(state).__name__
                raise ValueError(f"{rule}: config[{key!r}] must be an array of w's shape {w.shape}, got {got}")
            if state.dtype == np.bool_ or not np.issubdtype(state.dtype, np.number) \
                    or np.issubdtype(state.dtype, np.complexfloating):
                raise TypeError(f"{rule}: config[{key!r}] must be a real array, got dtype {state.dtype}")
    for key, (default, *_) in HYPERPARAMETERS[rule].items():
        config.setdefault(key, default)
    return w, dw, config


def sgd(w, dw, config=None):
    """w -= learning_rate * dw."""
    w, dw, config = _checked("sgd", w, dw, config)
    return w - config["learning_rate"] * dw, config


def sgd_momentum(w, dw, config=None):
    """v = momentum * v - learning_rate * dw; w += v."""
    w, dw, config = _checked("sgd_momentum", w, dw, config)
    v = config.get("velocity", np.zeros_like(w))
    v = config["momentum"] * v - config["learning_rate"] * dw
    config["velocity"] = v
    return w + v, config


def rmsprop(w, dw, config=None):
    """Divide the step by a running root-mean-square of the gradient."""
    w, dw, config = _checked("rmsprop", w, dw, config)
    cache = config.get("cache", np.zeros_like(w))
    cache = config["decay_rate"] * cache + (1 - config["decay_rate"]) * dw**2
    config["cache"] = cache
    return w - config["learning_rate"] * dw / (np.sqrt(cache) + config["epsilon"]), config


def adam(w, dw, config=None):
    """Adam with bias correction (Kingma & Ba); t counts the updates made.

    m = beta1 * m + (1 - beta1) * dw;  v = beta2 * v + (1 - beta2) * dw**2
    next_w = w - learning_rate * m_hat / (sqrt(v_hat) + epsilon),
    m_hat = m / (1 - beta1**t), v_hat = v / (1 - beta2**t).
    Float arrays take the fused one-pass kernel (``kernels.adam_step``: the same formula);
    the arrays in ``config`` are replaced, never modified.
    """
    w, dw, config = _checked("adam", w, dw, config)
    t = config.get("t", 0) + 1
    m = config.get("m", np.zeros_like(w))
    v = config.get("v", np.zeros_like(w))
    next_w, m, v = kernels.adam_step(w, dw, m, v, config["learning_rate"], config["beta1"], config["beta2"],
                                     config["epsilon"], t)
    config.update(m=m, v=v, t=t)
    return next_w, config


RULES = {"sgd": sgd, "sgd_momentum": sgd_momentum, "rmsprop": rmsprop, "adam": adam}
