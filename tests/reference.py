"""Independent float64 references the tests compare against."""

from __future__ import annotations

import numpy as np


def reference_norm(x, gamma, beta, axes, eps=1e-5):
    """Textbook float64 normalization over ``axes`` (two-pass, no tricks).

    gamma and beta must already broadcast against x.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def random_case(rng, shape, channels_shape, mean=3.0, std=2.0, dtype=np.float64):
    """x with a non-zero mean, random gamma/beta of ``channels_shape``, random dout."""
    x = rng.normal(mean, std, shape).astype(dtype)
    gamma = rng.normal(1.0, 0.5, channels_shape).astype(dtype)
    beta = rng.normal(0.0, 0.5, channels_shape).astype(dtype)
    dout = rng.normal(0.0, 1.0, shape).astype(dtype)
    return x, gamma, beta, dout
