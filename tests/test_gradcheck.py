"""The numeric gradient checker: correct derivatives, entries restored, rel_error."""

from __future__ import annotations

import numpy as np
import pytest

from normgrad.gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, rel_error


@pytest.mark.parametrize("order,h,tol", [(2, 1e-5, 1e-8), (4, 1e-3, 1e-10)])
def test_scalar_gradient_of_known_function(rng, order, h, tol):
    x = rng.normal(size=(3, 4))
    x0 = x.copy()
    grad = eval_numerical_gradient(lambda a: np.sum(np.sin(a) * a**2), x, h=h, order=order)
    np.testing.assert_allclose(grad, np.cos(x0) * x0**2 + 2 * x0 * np.sin(x0), rtol=tol, atol=tol)
    np.testing.assert_array_equal(x, x0)  # every perturbed entry restored exactly


@pytest.mark.parametrize("order", [2, 4])
def test_array_gradient_is_the_vector_jacobian_product(rng, order):
    x, W, df = rng.normal(size=(2, 3)), rng.normal(size=(3, 5)), rng.normal(size=(2, 5))
    x0 = x.copy()
    grad = eval_numerical_gradient_array(lambda a: np.tanh(a @ W), x, df, order=order)
    np.testing.assert_allclose(grad, (df * (1 - np.tanh(x0 @ W) ** 2)) @ W.T, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(x, x0)


def test_entry_is_restored_when_f_raises(rng):
    x = rng.normal(size=4)
    x0 = x.copy()
    calls = []

    def f(a):
        calls.append(a.copy())
        if len(calls) == 2:
            raise RuntimeError("boom")
        return a.sum()

    with pytest.raises(RuntimeError, match="boom"):
        eval_numerical_gradient(f, x)
    np.testing.assert_array_equal(x, x0)
    assert calls[0][0] != x0[0]  # it really did perturb before failing


def test_float32_gradient_keeps_dtype():
    x = np.linspace(-1, 1, 5, dtype=np.float32)
    grad = eval_numerical_gradient(lambda a: float(np.sum(a.astype(np.float64) ** 2)), x, h=1e-3)
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-3, atol=1e-3)


def test_verbose_prints_each_entry(capsys):
    eval_numerical_gradient(np.sum, np.ones((2, 2)), verbose=True)
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_rel_error_definition():
    assert rel_error(np.array([1.0]), np.array([1.1])) == pytest.approx(0.1 / 2.1)
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    # the 1e-8 floor: tiny absolute differences between near-zero values stay tiny
    assert rel_error(np.array([1e-12]), np.array([2e-12])) == pytest.approx(1e-12 / 1e-8)
    # the max over elements, not an average
    assert rel_error(np.array([1.0, 1.0, 1.0]), np.array([1.0, 1.0, 3.0])) == pytest.approx(0.5)
