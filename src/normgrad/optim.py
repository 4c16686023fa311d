"""First-order update rules, CS231n-compatible: ``rule(w, dw, config) -> (next_w, config)``.

``config`` holds the hyperparameters and the rule's state (velocity, moments);
missing entries get their defaults on the first call.
"""

from __future__ import annotations

import numpy as np

from . import kernels


def sgd(w, dw, config=None):
    """w -= learning_rate * dw."""
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    return w - config["learning_rate"] * dw, config


def sgd_momentum(w, dw, config=None):
    """v = momentum * v - learning_rate * dw; w += v."""
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    v = config.get("velocity", np.zeros_like(w))
    v = config["momentum"] * v - config["learning_rate"] * dw
    config["velocity"] = v
    return w + v, config


def rmsprop(w, dw, config=None):
    """Divide the step by a running root-mean-square of the gradient."""
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
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
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    t = config.get("t", 0) + 1
    m = config.get("m", np.zeros_like(w))
    v = config.get("v", np.zeros_like(w))
    next_w, m, v = kernels.adam_step(w, dw, m, v, config["learning_rate"], config["beta1"], config["beta2"],
                                     config["epsilon"], t)
    config.update(m=m, v=v, t=t)
    return next_w, config


RULES = {"sgd": sgd, "sgd_momentum": sgd_momentum, "rmsprop": rmsprop, "adam": adam}
