"""Issue 26's module items, each at its cause: a refused call leaves a model as it was,
wrong shapes are refused instead of broadcast, and errors say what is wrong."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from normgrad import kernels, nn


def _model():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 4), nn.BatchNorm1d(4))


def test_update_bn_stats_refused_midway_changes_nothing():
    rng = np.random.default_rng(0)
    model = _model()
    model.forward(rng.normal(size=(8, 3)))  # some running statistics to keep
    before = copy.deepcopy(model.state_dict())
    bad = rng.normal(size=(8, 3))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        nn.update_bn_stats(model, [rng.normal(size=(8, 3)), bad, rng.normal(size=(8, 3))])
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_update_bn_stats_leaves_other_buffers_and_mode_alone():
    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.BatchNorm1d(4), nn.InstanceNorm1d(4, track_running_stats=True))
    model.eval()
    x = [rng.normal(size=(8, 4, 5)) for _ in range(3)]
    instance_before = {k: v.copy() for k, v in model.layers[1].buffers.items()}
    nn.update_bn_stats(model, x)
    assert not model.training
    assert all(np.array_equal(instance_before[k], v) for k, v in model.layers[1].buffers.items())
    want = np.concatenate(x).transpose(1, 0, 2).reshape(4, -1)
    np.testing.assert_allclose(model.layers[0].buffers["running_var"], want.var(axis=1, ddof=1), rtol=1e-5)


def test_fuse_batchnorm_leaves_the_model_as_it_was():
    model = _model()
    before = copy.deepcopy(model.state_dict())
    fused = nn.fuse_batchnorm(model)
    assert fused is not model and model.training
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_frozen_batch_norm_backward_refuses_a_wrong_shape():
    layer = nn.FrozenBatchNorm2d(3)
    layer.forward(np.ones((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(2, 3, 4, 4\)"):
        layer.backward(np.ones((1, 3, 4, 4)))  # would broadcast silently
    assert layer.backward(np.ones((2, 3, 4, 4))).shape == (2, 3, 4, 4)


def test_instance_norm_refuses_one_spatial_element_in_training():
    with pytest.raises(ValueError, match="Expected more than 1 spatial element when training"):
        nn.InstanceNorm1d(3).forward(np.ones((4, 3, 1)))
    assert nn.InstanceNorm1d(3).eval().forward(np.ones((4, 3, 1))).shape == (4, 3, 1)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_float32_beyond_1e19_is_normalized_not_called_an_overflow(backend):
    """The fused kernels square float32 values in float32 (they overflow from ~1e19): the
    NumPy kernel, which scales them, takes over instead of a misleading error."""
    kernels.use_numpy(backend == "numpy")
    try:
        x = (np.random.default_rng(2).normal(size=(64, 3)) * 1e20).astype(np.float32)
        y, stats = kernels.batchnorm_forward(x, np.ones(3), np.zeros(3), training=True)
    finally:
        kernels.use_numpy(False)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(stats.var, x64.var(axis=0), rtol=1e-5)
    np.testing.assert_allclose(y, (x64 - x64.mean(0)) / x64.std(0), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_float32_beyond_1e19_per_sample_too(backend):
    kernels.use_numpy(backend == "numpy")
    try:
        x = (np.random.default_rng(3).normal(size=(5, 64)) * 1e20).astype(np.float32)
        y, stats = kernels.layernorm_forward(x, np.ones(64), np.zeros(64))
    finally:
        kernels.use_numpy(False)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(stats.var.reshape(-1), x64.var(axis=1), rtol=1e-5)
    want = (x64 - x64.mean(1, keepdims=True)) / x64.std(1, keepdims=True)
    np.testing.assert_allclose(y, want, rtol=1e-3, atol=1e-3)
