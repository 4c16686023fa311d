"""The CS231n layers beside the norms: numeric gradient checks, PyTorch agreement, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from normgrad.functional import layers as L
from normgrad.gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, rel_error

torch = pytest.importorskip("torch")


def _num(f, a, dout):
    return eval_numerical_gradient_array(f, a, dout, h=1e-5)


def test_affine_gradients(rng):
    x, w, b = rng.standard_normal((6, 2, 3)), rng.standard_normal((6, 5)), rng.standard_normal(5)
    out, cache = L.affine_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = L.affine_backward(dout, cache)
    assert dx.shape == x.shape
    assert rel_error(dx, _num(lambda a: L.affine_forward(a, w, b)[0], x, dout)) < 1e-8
    assert rel_error(dw, _num(lambda a: L.affine_forward(x, a, b)[0], w, dout)) < 1e-8
    assert rel_error(db, _num(lambda a: L.affine_forward(x, w, a)[0], b, dout)) < 1e-8


def test_relu_gradient(rng):
    x = rng.standard_normal((7, 9))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink, where the numeric gradient is ill-defined
    out, cache = L.relu_forward(x)
    dout = rng.standard_normal(out.shape)
    assert rel_error(L.relu_backward(dout, cache), _num(lambda a: L.relu_forward(a)[0], x, dout)) < 1e-9


def test_dropout_train_test_and_gradient(rng):
    x = rng.standard_normal((400, 50)) + 10
    keep = 0.7
    out, _ = L.dropout_forward(x, {"mode": "train", "p": keep, "seed": 3})
    assert abs((out != 0).mean() - keep) < 0.02
    assert abs(out.mean() - x.mean()) / x.mean() < 0.02  # inverted dropout keeps the expectation
    test_out, _ = L.dropout_forward(x, {"mode": "test", "p": keep})
    np.testing.assert_array_equal(test_out, x)
    small = rng.standard_normal((5, 6))
    param = {"mode": "train", "p": keep, "seed": 11}
    out, cache = L.dropout_forward(small, param)
    dout = rng.standard_normal(out.shape)
    numeric = _num(lambda a: L.dropout_forward(a, param)[0], small, dout)
    assert rel_error(L.dropout_backward(dout, cache), numeric) < 1e-9


def test_softmax_loss_gradient_and_torch(rng):
    x = rng.standard_normal((8, 10))
    y = rng.integers(10, size=8)
    loss, dx = L.softmax_loss(x, y)
    numeric = eval_numerical_gradient(lambda a: L.softmax_loss(a, y)[0], x.copy(), h=1e-5)
    assert rel_error(dx, numeric) < 1e-7
    tx = torch.tensor(x, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(tx, torch.tensor(y))
    tloss.backward()
    assert abs(loss - tloss.item()) < 1e-12
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_softmax_loss_is_stable_for_huge_scores():
    loss, dx = L.softmax_loss(np.array([[1e4, 0.0, -1e4]]), np.array([0]))
    assert loss == 0.0 and np.isfinite(dx).all()


@pytest.mark.parametrize("stride,pad", [(1, 1), (2, 1), (1, 0), (3, 1)])
def test_conv_gradients_and_torch(rng, stride, pad):
    x = rng.standard_normal((2, 3, 7, 7))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    param = {"stride": stride, "pad": pad}
    out, cache = L.conv_forward(x, w, b, param)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = L.conv_backward(dout, cache)
    assert rel_error(dx, _num(lambda a: L.conv_forward(a, w, b, param)[0], x, dout)) < 1e-8
    assert rel_error(dw, _num(lambda a: L.conv_forward(x, a, b, param)[0], w, dout)) < 1e-8
    assert rel_error(db, _num(lambda a: L.conv_forward(x, w, a, param)[0], b, dout)) < 1e-8
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tout = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=pad)
    tout.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    for mine, theirs in ((dx, tx), (dw, tw), (db, tb)):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("size,stride", [(2, 2), (3, 1), (2, 1)])
def test_max_pool_gradient_and_torch(rng, size, stride):
    x = rng.permutation(2 * 3 * 8 * 8).reshape(2, 3, 8, 8) / 10.0  # distinct values: a unique max per window
    param = {"pool_height": size, "pool_width": size, "stride": stride}
    out, cache = L.max_pool_forward(x, param)
    dout = rng.standard_normal(out.shape)
    dx = L.max_pool_backward(dout, cache)
    assert rel_error(dx, _num(lambda a: L.max_pool_forward(a, param)[0], x, dout)) < 1e-9
    tx = torch.tensor(x, requires_grad=True)
    tout = torch.nn.functional.max_pool2d(tx, size, stride)
    tout.backward(torch.tensor(dout))
    np.testing.assert_array_equal(out, tout.detach().numpy())
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12)


def _check_sandwich(rng, forward, backward, inputs: dict, normalization):
    """Numeric check of every gradient a norm sandwich returns; inputs in return order."""
    out, cache = forward(**inputs)
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)
    for (name, value), grad in zip(inputs.items(), grads):
        numeric = _num(lambda a, name=name: forward(**{**inputs, name: a})[0], value, dout)
        if name == "b" and normalization == "batchnorm":  # batch norm subtracts the bias right back out
            assert np.abs(grad).max() < 1e-12 and np.abs(numeric).max() < 1e-9
        else:
            assert rel_error(grad.reshape(value.shape), numeric) < 1e-7, name


@pytest.mark.parametrize("normalization", ["batchnorm", "layernorm"])
def test_affine_norm_relu_sandwich(rng, normalization):
    inputs = dict(x=rng.standard_normal((5, 4)) + 2, w=rng.standard_normal((4, 6)), b=rng.standard_normal(6),
                  gamma=rng.standard_normal(6), beta=rng.standard_normal(6))

    def forward(x, w, b, gamma, beta):
        return L.affine_norm_relu_forward(x, w, b, gamma, beta, {"mode": "train"}, normalization)

    _check_sandwich(rng, forward, L.affine_norm_relu_backward, inputs, normalization)


@pytest.mark.parametrize("normalization", ["batchnorm", "groupnorm"])
def test_conv_norm_relu_sandwich(rng, normalization):
    inputs = dict(x=rng.standard_normal((3, 2, 4, 4)) + 1, w=rng.standard_normal((4, 2, 3, 3)),
                  b=rng.standard_normal(4), gamma=rng.standard_normal(4), beta=rng.standard_normal(4))

    def forward(x, w, b, gamma, beta):
        return L.conv_norm_relu_forward(x, w, b, gamma, beta, {"stride": 1, "pad": 1}, {"mode": "train"},
                                        normalization, G=2)

    _check_sandwich(rng, forward, L.conv_norm_relu_backward, inputs, normalization)


def test_conv_relu_pool_and_affine_relu_sandwiches(rng):
    x, w, b = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3, 3, 3)), rng.standard_normal(2)
    conv, pool = {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2}
    out, cache = L.conv_relu_pool_forward(x, w, b, conv, pool)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = L.conv_relu_pool_backward(dout, cache)
    assert rel_error(dx, _num(lambda a: L.conv_relu_pool_forward(a, w, b, conv, pool)[0], x, dout)) < 1e-7
    assert rel_error(dw, _num(lambda a: L.conv_relu_pool_forward(x, a, b, conv, pool)[0], w, dout)) < 1e-7
    x2, w2, b2 = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    out, cache = L.affine_relu_forward(x2, w2, b2)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = L.affine_relu_backward(dout, cache)
    assert rel_error(dw, _num(lambda a: L.affine_relu_forward(x2, a, b2)[0], w2, dout)) < 1e-7
    assert rel_error(db, _num(lambda a: L.affine_relu_forward(x2, w2, a)[0], b2, dout)) < 1e-7


def test_float32_stays_float32(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    w, b = rng.standard_normal((2, 3, 3, 3)).astype(np.float32), np.zeros(2, np.float32)
    out, _ = L.conv_forward(x, w, b, {"stride": 1, "pad": 1})
    assert out.dtype == np.float32
    assert L.max_pool_forward(out, {})[0].dtype == np.float32
    assert L.affine_forward(x, rng.standard_normal((48, 2)).astype(np.float32), b)[0].dtype == np.float32


@pytest.mark.parametrize("call,message", [
    (lambda: L.affine_forward(np.ones((2, 3)), np.ones((4, 5)), np.ones(5)), "do not fit"),
    (lambda: L.affine_forward(np.ones((2, 3), dtype=int), np.ones((3, 5)), np.ones(5)), "x"),
    (lambda: L.conv_forward(np.ones((1, 2, 5, 5)), np.ones((3, 3, 3, 3)), np.ones(3), {}), "do not fit"),
    (lambda: L.conv_forward(np.ones((1, 2, 6, 6)), np.ones((3, 2, 3, 3)), np.ones(3), {"stride": 2}), "tile"),
    (lambda: L.conv_forward(np.ones((2, 5, 5)), np.ones((3, 2, 3, 3)), np.ones(3), {}), "x"),
    (lambda: L.max_pool_forward(np.ones((1, 1, 5, 5)), {}), "tile"),
    (lambda: L.softmax_loss(np.ones((3, 4)), np.array([0, 1, 4])), "labels"),
    (lambda: L.softmax_loss(np.ones((3, 4)), np.array([0.0, 1.0, 2.0])), "integer"),
    (lambda: L.softmax_loss(np.array([[np.nan, 0.0]]), np.array([0])), "NaN"),
    (lambda: L.dropout_forward(np.ones(3), {"mode": "train", "p": 0.0}), "keep probability"),
    (lambda: L.dropout_forward(np.ones(3), {"mode": "eval", "p": 0.5}), "mode"),
    (lambda: L.affine_norm_relu_forward(np.ones((2, 2)), np.ones((2, 2)), np.ones(2), np.ones(2), np.ones(2),
                                        {"mode": "train"}, "groupnorm"), "normalization"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
