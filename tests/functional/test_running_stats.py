"""Train/test behaviour: running averages, their convention, and test-time outputs."""

from __future__ import annotations

import numpy as np
import pytest

import normgrad.functional as F


def test_missing_running_stats_start_at_zeros_as_in_the_cs231n_starter(rng):
    x = rng.normal(4, 2, (10, 3))
    bn_param = {"mode": "train", "momentum": 0.9}
    F.batchnorm_forward(x, np.ones(3), np.zeros(3), bn_param)
    np.testing.assert_allclose(bn_param["running_mean"], 0.1 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(bn_param["running_var"], 0.1 * x.var(0), rtol=1e-12)


def test_test_mode_without_running_stats_uses_zeros(rng):
    x = rng.normal(4, 2, (5, 3))
    out, _ = F.batchnorm_forward(x, np.ones(3), np.zeros(3), {"mode": "test"})
    np.testing.assert_allclose(out, x / np.sqrt(0 + 1e-5), rtol=1e-12)


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9, 1.0])
def test_running_average_convention(rng, momentum):
    """running = momentum * running + (1 - momentum) * batch, biased variance."""
    rm, rv = rng.normal(size=4), rng.uniform(0.5, 2, 4)
    bn_param = {"mode": "train", "momentum": momentum, "running_mean": rm.copy(), "running_var": rv.copy()}
    x = rng.normal(-3, 5, (7, 4))
    F.batchnorm_forward(x, rng.normal(size=4), rng.normal(size=4), bn_param)
    np.testing.assert_allclose(bn_param["running_mean"], momentum * rm + (1 - momentum) * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(bn_param["running_var"], momentum * rv + (1 - momentum) * x.var(0), rtol=1e-12)


@pytest.mark.parametrize("forward,shape,C", [
    (F.batchnorm_forward, (256, 5), 5),
    (F.spatial_batchnorm_forward, (16, 5, 4, 4), 5),
])
def test_test_mode_normalizes_after_training(rng, forward, shape, C):
    """After 100 training steps on data of known mean/std, test mode gives mean 0, std 1."""
    bshape = (1, C) + (1,) * (len(shape) - 2)
    mu = rng.uniform(-10, 10, C).reshape(bshape)
    sigma = rng.uniform(0.5, 5, C).reshape(bshape)
    gamma, beta = np.ones(C), np.zeros(C)
    bn_param = {"mode": "train"}
    for _ in range(100):
        forward(mu + sigma * rng.standard_normal(shape), gamma, beta, bn_param)
    bn_param["mode"] = "test"
    big = (20000,) + shape[1:] if len(shape) == 2 else (2000,) + shape[1:]
    out, _ = forward(mu + sigma * rng.standard_normal(big), gamma, beta, bn_param)
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    np.testing.assert_allclose(out.mean(axis=axes), 0, atol=0.05)
    np.testing.assert_allclose(out.std(axis=axes), 1, atol=0.05)
    # and the batch statistics differ from the running ones: test mode really used the latter
    np.testing.assert_allclose(bn_param["running_mean"], mu.reshape(C), atol=0.1 * sigma.reshape(C).max())


def test_test_mode_does_not_change_running_stats(rng):
    rm, rv = rng.normal(size=3), rng.uniform(1, 2, 3)
    bn_param = {"mode": "test", "running_mean": rm.copy(), "running_var": rv.copy()}
    F.batchnorm_forward(rng.normal(size=(4, 3)), np.ones(3), np.zeros(3), bn_param)
    np.testing.assert_array_equal(bn_param["running_mean"], rm)
    np.testing.assert_array_equal(bn_param["running_var"], rv)


def test_test_mode_output_is_affine_in_x(rng):
    """In test mode each row is normalized on its own: a batch of one works."""
    rm, rv = rng.normal(size=3), rng.uniform(1, 2, 3)
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    x = rng.normal(size=(1, 3))
    out, _ = F.batchnorm_forward(x, gamma, beta, {"mode": "test", "running_mean": rm, "running_var": rv})
    np.testing.assert_allclose(out, gamma * (x - rm) / np.sqrt(rv + 1e-5) + beta, rtol=1e-12)


def test_layernorm_ignores_mode_and_is_the_same_at_test_time(rng):
    x, gamma, beta = rng.normal(2, 3, (4, 6)), rng.normal(size=6), rng.normal(size=6)
    a, _ = F.layernorm_forward(x, gamma, beta, {"mode": "train"})
    b, _ = F.layernorm_forward(x, gamma, beta, {"mode": "test", "eps": 1e-5})
    np.testing.assert_array_equal(a, b)
