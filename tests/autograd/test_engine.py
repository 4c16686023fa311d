"""The engine's ops against numeric gradients, broadcasting, fan-out, double backward."""

from __future__ import annotations

import numpy as np
import pytest

from normgrad.autograd import Tensor, grad, no_grad
from normgrad.gradcheck import eval_numerical_gradient, rel_error

# op name -> (function of Tensors or arrays, input shapes, how to draw positive inputs)
OPS = {
    "add": (lambda a, b: a + b, [(3, 4), (3, 4)]),
    "add broadcast row": (lambda a, b: a + b, [(3, 4), (4,)]),
    "add broadcast col": (lambda a, b: a + b, [(3, 4), (3, 1)]),
    "sub broadcast": (lambda a, b: a - b, [(2, 3, 4), (1, 3, 1)]),
    "rsub scalar": (lambda a: 2.0 - a, [(3,)]),
    "mul broadcast": (lambda a, b: a * b, [(3, 4), (4,)]),
    "mul scalar": (lambda a: a * 3.0, [(2, 2)]),
    "div": (lambda a, b: a / b, [(3, 4), (3, 4)]),
    "div broadcast": (lambda a, b: a / b, [(3, 4), (1, 4)]),
    "rdiv": (lambda a: 1.0 / a, [(5,)]),
    "neg": (lambda a: -a, [(2, 3)]),
    "pow 2": (lambda a: a**2, [(2, 3)]),
    "pow -0.5": (lambda a: a**-0.5, [(2, 3)]),
    "pow 3": (lambda a: a**3, [(4,)]),
    "sqrt": (lambda a: a.sqrt(), [(3, 2)]),
    "exp": (lambda a: a.exp(), [(3, 2)]),
    "log": (lambda a: a.log(), [(3, 2)]),
    "relu": (lambda a: a.relu(), [(4, 5)]),
    "sum all": (lambda a: a.sum(), [(3, 4)]),
    "sum axis 0": (lambda a: a.sum(axis=0), [(3, 4)]),
    "sum axes keepdims": (lambda a: a.sum(axis=(0, 2), keepdims=True), [(2, 3, 4)]),
    "mean axis 1": (lambda a: a.mean(axis=1), [(3, 4)]),
    "mean negative axis keepdims": (lambda a: a.mean(axis=-1, keepdims=True), [(3, 4)]),
    "matmul": (lambda a, b: a @ b, [(3, 4), (4, 2)]),
    "reshape": (lambda a: a.reshape(6, 2), [(3, 4)]),
    "transpose": (lambda a: a.transpose(1, 0, 2), [(2, 3, 4)]),
    "T": (lambda a: a.T, [(2, 5)]),
    "expand": (lambda a: a.expand((3, 4)), [(1, 4)]),
}
POSITIVE = {"div", "div broadcast", "rdiv", "pow -0.5", "sqrt", "log"}


def _inputs(rng, name, shapes):
    if name in POSITIVE:
        return [rng.uniform(0.5, 2.0, s) for s in shapes]
    if name == "relu":  # keep values away from the kink
        return [rng.choice([-1, 1], s) * rng.uniform(0.1, 2.0, s) for s in shapes]
    return [rng.normal(size=s) for s in shapes]


@pytest.mark.parametrize("name", list(OPS))
def test_op_gradient_matches_numeric(rng, name):
    fn, shapes = OPS[name]
    arrays = _inputs(rng, name, shapes)
    tensors = [Tensor(a.copy()) for a in arrays]
    out = fn(*tensors)
    dout = rng.normal(size=out.shape)
    out.backward(dout)
    for i, (t, a) in enumerate(zip(tensors, arrays)):
        def f(v, i=i):
            args = [Tensor(v) if j == i else Tensor(arrays[j]) for j in range(len(arrays))]
            return float(np.sum(fn(*args).data * dout))

        numeric = eval_numerical_gradient(f, a.copy(), h=1e-3, order=4)
        assert t.grad is not None and t.grad.shape == a.shape
        assert rel_error(t.grad.data, numeric) < 1e-8, (name, i)


def test_fan_out_gradients_accumulate():
    x = Tensor(np.array([1.0, 2.0, 3.0]), "x")
    y = x * x + x * 2.0 + x  # x feeds three gates
    y.backward(np.ones(3))
    np.testing.assert_allclose(x.grad.data, 2 * x.data + 3)


def test_second_backward_adds_into_grad_and_zero_grad_clears():
    x = Tensor(np.array([1.0, -2.0]), "x")
    y = (x * x).sum()
    y.backward()
    y.backward()
    np.testing.assert_allclose(x.grad.data, 2 * (2 * x.data))
    y.zero_grad()
    assert x.grad is None


def test_backward_needs_grad_for_non_scalar_and_matching_shape():
    y = Tensor(np.ones((2, 2))) * 2.0
    with pytest.raises(ValueError, match="grad must be given"):
        y.backward()
    with pytest.raises(ValueError, match=r"output's shape \(2, 2\)"):
        y.backward(np.ones(3))


def test_no_grad_builds_no_graph():
    x = Tensor(np.ones(3))
    with no_grad():
        y = x * 2.0 + 1.0
    assert y.parents == () and y.op == ""


def test_grad_function_leaves_no_grad_behind(rng):
    x = Tensor(rng.normal(size=4))
    (gx,) = grad((x.exp()).sum(), [x])
    np.testing.assert_allclose(gx.data, np.exp(x.data))
    assert x.grad is None


@pytest.mark.parametrize("fn,second", [
    (lambda x: (x**3).sum(), lambda x: 6 * x),
    (lambda x: (x.exp() * x).sum(), lambda x: np.exp(x) * (x + 2)),
    (lambda x: (x.log()).sum(), lambda x: -1 / x**2),
    (lambda x: (1.0 / x).sum(), lambda x: 2 / x**3),
    (lambda x: (x.sqrt()).sum(), lambda x: -0.25 * x**-1.5),
])
def test_double_backward_elementwise(rng, fn, second):
    x = Tensor(rng.uniform(0.5, 2.0, 5))
    (g,) = grad(fn(x), [x], create_graph=True)
    (h,) = grad(g.sum(), [x])  # diagonal Hessian: elementwise functions
    np.testing.assert_allclose(h.data, second(x.data), rtol=1e-12)


def test_double_backward_via_backward_create_graph():
    x = Tensor(np.array([1.0, 2.0]), "x")
    (x**3).sum().backward(create_graph=True)
    gx = x.grad
    assert gx.parents  # the gradient is itself a graph
    x.zero_grad()
    gx.sum().backward()
    np.testing.assert_allclose(x.grad.data, 6 * x.data)


def test_pow_needs_a_number():
    with pytest.raises(TypeError, match="real number p"):
        Tensor(np.ones(2)) ** Tensor(np.ones(2))


def test_matmul_needs_2d():
    with pytest.raises(ValueError, match="2-D"):
        Tensor(np.ones(3)) @ Tensor(np.ones(3))
