"""FullyConnectedNet and ConvNet: numeric gradient checks, overfitting, modes, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from normgrad.gradcheck import eval_numerical_gradient, rel_error
from normgrad.classifiers import ConvNet, FullyConnectedNet
from normgrad.solver import Solver

# The ranges CS231n states for these checks: weights below 1e-4 (they pass through
# relu kinks and products), biases and normalization parameters below 1e-7.
W_BOUND, OTHER_BOUND = 1e-4, 1e-7


def _check_all(model, X, y):
    """Relative error of every analytic gradient against a five-point numeric one.

    A bias that feeds a batch norm has gradient zero (the norm subtracts it right
    back out): both sides must be round-off, and it is left out of the errors.
    """
    loss, grads = model.loss(X, y)
    assert set(grads) == set(model.params)
    errors = {}
    for name in sorted(model.params):
        numeric = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], h=1e-4, order=4)
        feeds_batchnorm = name.startswith("b") and f"gamma{name[1:]}" in model.params and \
            getattr(model, "normalization", None) == "batchnorm"
        if feeds_batchnorm:
            assert np.abs(grads[name]).max() < 1e-12 and np.abs(numeric).max() < 1e-8, name
        else:
            errors[name] = rel_error(grads[name], numeric)
    return errors


def _assert_bounds(errors):
    for name, err in errors.items():
        bound = W_BOUND if name.startswith("W") else OTHER_BOUND
        assert err < bound, (name, err)


@pytest.mark.parametrize("normalization", [None, "batchnorm", "layernorm"])
@pytest.mark.parametrize("reg", [0.0, 3.14])
def test_fully_connected_net_gradients(rng, normalization, reg):
    N, D, C = 5, 7, 4
    X = rng.standard_normal((N, D)) + 0.5
    y = rng.integers(C, size=N)
    model = FullyConnectedNet([6, 5], input_dim=D, num_classes=C, normalization=normalization, reg=reg,
                              weight_scale=0.5, dtype=np.float64, rng=int(rng.integers(1000)))
    # random gamma/beta, so the norms' backward is not tested at the identity
    for name in model.params:
        if name.startswith(("gamma", "beta")):
            model.params[name] = rng.standard_normal(model.params[name].shape)
    _assert_bounds(_check_all(model, X, y))


def test_fully_connected_net_gradients_with_dropout(rng):
    X, y = rng.standard_normal((6, 5)), rng.integers(3, size=6)
    model = FullyConnectedNet([8, 8], input_dim=5, num_classes=3, dropout_keep_ratio=0.6,
                              normalization="batchnorm", weight_scale=0.5, dtype=np.float64, rng=3)
    model.dropout_param["seed"] = 123  # the same mask on every forward, as CS231n's check does
    _assert_bounds(_check_all(model, X, y))


@pytest.mark.parametrize("normalization", ["batchnorm", "groupnorm", None])
def test_conv_net_gradients(rng, normalization):
    X = rng.standard_normal((3, 2, 4, 4)) + 1
    y = rng.integers(3, size=3)
    model = ConvNet(input_dim=(2, 4, 4), num_filters=(4,), num_classes=3, normalization=normalization, G=2,
                    reg=0.1, dtype=np.float64, rng=5)
    for name in model.params:
        if name.startswith(("gamma", "beta")):
            model.params[name] = rng.standard_normal(model.params[name].shape)
    _assert_bounds(_check_all(model, X, y))


@pytest.mark.parametrize("normalization", [None, "batchnorm", "layernorm"])
def test_overfit_small_batch(rng, normalization):
    X = rng.standard_normal((50, 20)).astype(np.float32)
    y = rng.integers(10, size=50)
    data = {"X_train": X, "y_train": y, "X_val": X, "y_val": y}
    model = FullyConnectedNet([64, 64, 64], input_dim=20, normalization=normalization, weight_scale=0.1, rng=0)
    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 5e-3}, batch_size=25,
                    num_epochs=40, verbose=False, seed=0)
    solver.train()
    assert solver.train_acc_history[-1] == 1.0
    assert solver.loss_history[-1] < 0.1 * solver.loss_history[0]


def test_test_mode_uses_running_statistics(rng):
    model = FullyConnectedNet([16], input_dim=8, num_classes=3, normalization="batchnorm", rng=0,
                              dtype=np.float64)
    X = rng.standard_normal((64, 8)) * 3 + 5
    for _ in range(100):
        model.loss(X, rng.integers(3, size=64))
    # test mode: scores of one example do not depend on the rest of the batch
    alone = model.loss(X[:1])
    together = model.loss(X)[:1]
    np.testing.assert_allclose(alone, together, rtol=1e-12)
    assert model.bn_params[0]["running_mean"].shape == (16,)


def test_float32_model_stays_float32(rng):
    model = FullyConnectedNet([8], input_dim=4, num_classes=3, normalization="layernorm", rng=0)
    loss, grads = model.loss(rng.standard_normal((5, 4)), rng.integers(3, size=5))
    assert all(g.dtype == np.float32 for g in grads.values())
    assert model.loss(rng.standard_normal((5, 4))).dtype == np.float32


def test_activations_are_recorded_on_request(rng):
    model = FullyConnectedNet([8, 6], input_dim=4, num_classes=3, normalization="batchnorm", rng=0)
    model.loss(rng.standard_normal((5, 4)), rng.integers(3, size=5))
    assert model.activations == []
    model.record_activations = True
    model.loss(rng.standard_normal((5, 4)))
    assert [a.shape for a in model.activations] == [(5, 8), (5, 6)]


@pytest.mark.parametrize("make,message", [
    (lambda: FullyConnectedNet([4], normalization="groupnorm"), "normalization"),
    (lambda: FullyConnectedNet([4], dropout_keep_ratio=0), "dropout_keep_ratio"),
    (lambda: ConvNet(input_dim=(1, 6, 6), num_filters=(4, 4)), "halved"),
    (lambda: ConvNet(num_filters=(6,), normalization="groupnorm", G=4), "divide"),
    (lambda: FullyConnectedNet([4], input_dim=3).loss(np.full((2, 3), np.nan), np.array([0, 1])), "NaN"),
    (lambda: FullyConnectedNet([4], input_dim=3).loss(np.ones((2, 5)), np.array([0, 1])), "do not fit"),
])
def test_bad_arguments(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_demo_probe_leaves_the_model_as_it_was(rng):
    from normgrad.demo.training import RunResult, record_activations

    model = FullyConnectedNet([8, 6], input_dim=4, num_classes=3, normalization="batchnorm",
                              dropout_keep_ratio=0.5, weight_scale=1.0, rng=0)
    X, y = rng.standard_normal((20, 4)), rng.integers(3, size=20)
    model.loss(X, y)
    before = [dict(p) for p in model.bn_params]
    result = RunResult("batch norm", "batchnorm", [], [], [], 0.0, 0.0, None, 0.0, 0)
    record_activations(model, (X * 3 + 1, y), result)
    assert model.use_dropout and not model.record_activations
    for old, new in zip(before, model.bn_params):
        np.testing.assert_array_equal(old["running_mean"], new["running_mean"])
    # batch statistics of the probe: every layer normalized (gamma 1, beta 0 at init)
    assert all(abs(s - 1) < 1e-3 for s in result.activation_std[0])
