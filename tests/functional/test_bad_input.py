"""Every bad input raises a ValueError/TypeError that names what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

import normgrad.functional as F
from normgrad.gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, rel_error

R = np.random.default_rng(0)
X2, X4 = R.normal(size=(4, 3)), R.normal(size=(2, 4, 3, 3))
G3, B3, G4, B4 = np.ones(3), np.zeros(3), np.ones(4), np.zeros(4)


def with_nan(a, value=np.nan):
    a = a.copy()
    a.flat[1] = value
    return a


def bn(x=X2, gamma=G3, beta=B3, **param):
    return lambda: F.batchnorm_forward(x, gamma, beta, {"mode": "train", **param})


def sbn(x=X4, gamma=G4, beta=B4, **param):
    return lambda: F.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train", **param})


def ln(x=X2, gamma=G3, beta=B3, **param):
    return lambda: F.layernorm_forward(x, gamma, beta, param)


def gn(x=X4, gamma=G4, beta=B4, G=2, **param):
    return lambda: F.spatial_groupnorm_forward(x, gamma, beta, G, param)


FORWARD_CASES = {
    # wrong rank or shape
    "bn x 3-D": (bn(x=X4[:, :, 0]), ValueError, "x must be 2-D"),
    "bn x 1-D": (bn(x=X2[0]), ValueError, "x must be 2-D"),
    "sbn x 2-D": (sbn(x=X2), ValueError, "x must be 4-D"),
    "ln x 3-D": (ln(x=X4[0]), ValueError, "x must be 2-D"),
    "gn x 2-D": (gn(x=X2), ValueError, "x must be 4-D"),
    "bn empty": (bn(x=np.zeros((0, 3))), ValueError, "x must not be empty"),
    # gamma / beta not matching
    "bn gamma shape": (bn(gamma=np.ones(4)), ValueError, r"gamma must have shape \(3,\)"),
    "bn beta shape": (bn(beta=np.zeros((1, 3))), ValueError, r"beta must have shape \(3,\)"),
    "sbn gamma shape": (sbn(gamma=G3), ValueError, r"gamma must have shape \(4,\)"),
    "ln beta shape": (ln(beta=B4), ValueError, r"beta must have shape \(3,\)"),
    "gn gamma shape": (gn(gamma=np.ones((1, 4, 1))), ValueError, "gamma must have shape"),
    "gn gamma/beta differ": (gn(beta=B4.reshape(1, 4, 1, 1)), ValueError, "gamma and beta must have the same shape"),
    # G not dividing C
    "gn G=3 of C=4": (gn(G=3), ValueError, "G must be a positive divisor of the channel count C=4"),
    "gn G=0": (gn(G=0), ValueError, "G must be a positive divisor"),
    "gn G float": (gn(G=2.0), TypeError, "G must be an integer"),
    "gn G bool": (gn(G=True), TypeError, "G must be an integer"),
    # one value per channel in training
    "bn N=1": (bn(x=X2[:1]), ValueError, "expected more than 1 value per channel"),
    "sbn N=1 H=W=1": (sbn(x=X4[:1, :, :1, :1]), ValueError, "expected more than 1 value per channel"),
    # integer / object / bool / complex dtypes
    "bn x int": (bn(x=np.arange(12).reshape(4, 3)), TypeError, "x must be a float32 or float64 array"),
    "bn x object": (bn(x=X2.astype(object)), TypeError, "x must be a float32 or float64 array"),
    "bn x bool": (bn(x=X2 > 0), TypeError, "x must be a float32 or float64 array"),
    "ln x complex": (ln(x=X2 + 0j), TypeError, "x must be a float32 or float64 array"),
    "bn x float16": (bn(x=X2.astype(np.float16)), TypeError, "cast float16"),
    "sbn x longdouble": (sbn(x=X4.astype(np.longdouble)), TypeError, "x must be a float32 or float64"),
    "bn x ragged list": (bn(x=[[1.0, 2.0, 3.0], [1.0]]), ValueError, "x must be a rectangular array"),
    "ln gamma ragged list": (ln(gamma=[[1.0], [1.0, 2.0]]), ValueError, "gamma must be a rectangular array"),
    "bn x huge variance": (bn(x=X2 * 1e160), ValueError, "variance of some channel overflows"),
    "bn gamma bool": (bn(gamma=np.ones(3, bool)), TypeError, "gamma must be a float32 or float64 array"),
    "gn beta complex": (gn(beta=np.zeros(4, complex)), TypeError, "beta must be a float32 or float64 array"),
    # NaN / Inf in inputs and running statistics
    "bn x NaN": (bn(x=with_nan(X2)), ValueError, "x contains 1 non-finite"),
    "bn x Inf": (bn(x=with_nan(X2, np.inf)), ValueError, "x contains 1 non-finite"),
    "sbn x -Inf": (sbn(x=with_nan(X4, -np.inf)), ValueError, "x contains 1 non-finite"),
    "ln x NaN": (ln(x=with_nan(X2)), ValueError, "x contains"),
    "gn x NaN": (gn(x=with_nan(X4)), ValueError, "x contains"),
    "bn gamma NaN": (bn(gamma=with_nan(G3)), ValueError, "gamma contains"),
    "ln beta Inf": (ln(beta=with_nan(B3, np.inf)), ValueError, "beta contains"),
    "bn running_mean NaN": (bn(running_mean=with_nan(B3)), ValueError, r"bn_param\['running_mean'\] contains"),
    "bn running_var Inf": (bn(running_var=with_nan(G3, np.inf)), ValueError, r"bn_param\['running_var'\] contains"),
    "bn running_var negative": (bn(running_var=-G3), ValueError, r"running_var'\] must be >= 0"),
    "bn running_mean shape": (bn(running_mean=B4), ValueError, r"running_mean'\] must have shape \(3,\)"),
    # unknown mode
    "bn mode unknown": (bn(mode="eval"), ValueError, r"bn_param\['mode'\] must be one of"),
    "sbn mode unknown": (sbn(mode="Train"), ValueError, r"bn_param\['mode'\] must be one of"),
    "bn mode missing": (lambda: F.batchnorm_forward(X2, G3, B3, {}), ValueError, r"bn_param\['mode'\] is required"),
    "bn param not dict": (lambda: F.batchnorm_forward(X2, G3, B3, "train"), TypeError, "bn_param must be a dict"),
    "ln param not dict": (lambda: F.layernorm_forward(X2, G3, B3, 1e-5), TypeError, "ln_param must be a dict"),
    # eps <= 0
    "bn eps 0": (bn(eps=0), ValueError, "eps must be a finite number > 0"),
    "bn eps negative": (bn(eps=-1e-5), ValueError, "eps must be a finite number > 0"),
    "ln eps 0": (ln(eps=0.0), ValueError, "eps must be a finite number > 0"),
    "gn eps NaN": (gn(eps=float("nan")), ValueError, "eps must be a finite number > 0"),
    "sbn eps string": (sbn(eps="1e-5"), TypeError, "eps must be a real number"),
    "bn eps below float32 tiny": (bn(x=X2.astype(np.float32), eps=1e-60), ValueError, r"eps must lie in \[1.18e-38"),
    "ln eps huge": (ln(eps=1e40), ValueError, r"eps must lie in"),
    # momentum outside [0, 1]
    "bn momentum > 1": (bn(momentum=1.5), ValueError, r"momentum must lie in \[0, 1\]"),
    "bn momentum < 0": (bn(momentum=-0.1), ValueError, r"momentum must lie in \[0, 1\]"),
    "sbn momentum None": (sbn(momentum=None), TypeError, "momentum must be a real number"),
}


@pytest.mark.parametrize("case", list(FORWARD_CASES))
def test_forward_rejects(case):
    call, error, message = FORWARD_CASES[case]
    with pytest.raises(error, match=message):
        call()


def _caches():
    return {
        "bn": F.batchnorm_forward(X2, G3, B3, {"mode": "train"})[1],
        "ln": F.layernorm_forward(X2, G3, B3, {})[1],
        "sbn": F.spatial_batchnorm_forward(X4, G4, B4, {"mode": "train"})[1],
        "gn": F.spatial_groupnorm_forward(X4, G4, B4, 2, {})[1],
    }


BACKWARD_CASES = {
    "bn dout shape": (F.batchnorm_backward, "bn", X2[:3], ValueError, r"dout must have the forward output's shape \(4, 3\)"),
    "bn alt dout shape": (F.batchnorm_backward_alt, "bn", X2.T, ValueError, "dout must have the forward output's shape"),
    "ln dout shape": (F.layernorm_backward, "ln", X2[:, :2], ValueError, "dout must have"),
    "sbn dout shape": (F.spatial_batchnorm_backward, "sbn", X4[:1], ValueError, "dout must have"),
    "gn dout shape": (F.spatial_groupnorm_backward, "gn", X4[:, :2], ValueError, "dout must have"),
    "bn dout NaN": (F.batchnorm_backward, "bn", with_nan(X2), ValueError, "dout contains"),
    "gn dout Inf": (F.spatial_groupnorm_backward, "gn", with_nan(X4, np.inf), ValueError, "dout contains"),
    "bn dout int": (F.batchnorm_backward_alt, "bn", np.ones((4, 3), int), TypeError, "dout must be a float32 or float64"),
    "bn cache tuple": (F.batchnorm_backward, None, X2, TypeError, "cache must be the NormCache"),
    "bn given ln cache": (F.batchnorm_backward_alt, "ln", X2, ValueError, "cache comes from layernorm_forward"),
    "ln given bn cache": (F.layernorm_backward, "bn", X2, ValueError, "cache comes from batchnorm_forward"),
    "sbn given gn cache": (F.spatial_batchnorm_backward, "gn", X4, ValueError, "cache comes from spatial_groupnorm"),
}


@pytest.mark.parametrize("case", list(BACKWARD_CASES))
def test_backward_rejects(case):
    backward, kind, dout, error, message = BACKWARD_CASES[case]
    cache = _caches()[kind] if kind else (X2, G3, B3)
    with pytest.raises(error, match=message):
        backward(dout, cache)


GRADCHECK_CASES = {
    "integer x": (lambda: eval_numerical_gradient(np.sum, np.arange(3)), TypeError, "x must be a float32 or float64"),
    "read-only x": (lambda: eval_numerical_gradient(np.sum, _readonly()), TypeError, "writable"),
    "non-scalar f": (lambda: eval_numerical_gradient(lambda a: a * 2, np.ones(3)), ValueError, "f must return a scalar"),
    "df shape": (lambda: eval_numerical_gradient_array(lambda a: a * 2, np.ones(3), np.ones(4)), ValueError, "df has shape"),
    "bad order": (lambda: eval_numerical_gradient(np.sum, np.ones(3), order=3), ValueError, "order must be one of"),
    "h zero": (lambda: eval_numerical_gradient(np.sum, np.ones(3), h=0), ValueError, "h must be a finite number > 0"),
    "rel_error shapes": (lambda: rel_error(np.ones((1, 3)), np.ones(3)), ValueError, "one shape"),
}


def _readonly():
    a = np.ones(3)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("case", list(GRADCHECK_CASES))
def test_gradcheck_rejects(case):
    call, error, message = GRADCHECK_CASES[case]
    with pytest.raises(error, match=message):
        call()
