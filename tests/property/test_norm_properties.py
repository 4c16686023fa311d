"""Property-based tests: every public norm function and module, on generated inputs.

Each call either returns finite results equal to an independent float64 reference
within the stated tolerances, or raises ValueError/TypeError naming the argument
at fault; never a NumPy/Numba internal error, never a silent wrong answer.

Inputs: shapes with N = 2, D = 1 and odd sizes; float32 and float64 data with
float32, float64 or integer gamma/beta; offsets up to 1e8 and scales from 1e-3 to
1e18; a constant column; C-contiguous, Fortran-ordered,
negative-stride and strided views. Hostile inputs: NaN/Inf in one place,
integer/bool/object/complex/string data, 0-d and empty arrays, mismatched gamma
and beta, wrong ranks. Example budgets are fixed and derandomized (the profile in
conftest.py), so the suite's time and results do not vary from run to run.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import normgrad.functional as F
from normgrad import kernels as K
from normgrad import nn

# ----------------------------------------------------------------------------- the reference


def reference(x, gamma, beta, dout, groups_view, reduce_axes, param_axes, eps=1e-5, fixed=None):
    """Textbook float64 forward and closed-form backward of a norm.

    - groups_view: shape x is viewed in; reduce_axes: axes of that view that share
      a mean and a variance; gamma/beta broadcast against x; param_axes: axes of x
      that dgamma/dbeta sum over
    - fixed: (mean, var) broadcastable to the view, for constant statistics
    Returns out, dx, dgamma, dbeta (float64), and (kappa, max |xhat|) for the tolerances.
    """
    x, dout = np.asarray(x, np.float64), np.asarray(dout, np.float64)
    g, b = np.asarray(gamma, np.float64), np.asarray(beta, np.float64)
    xv = x.reshape(groups_view)
    if fixed is None:
        mean = xv.mean(axis=reduce_axes, keepdims=True)
        var = ((xv - mean) ** 2).mean(axis=reduce_axes, keepdims=True)
    else:
        mean, var = fixed
    ivar = 1.0 / np.sqrt(var + eps)
    xhat = ((xv - mean) * ivar).reshape(x.shape)
    out = g * xhat + b
    dxhat = (dout * g).reshape(groups_view)
    xh = xhat.reshape(groups_view)
    if fixed is None:
        dxv = ivar * (dxhat - dxhat.mean(axis=reduce_axes, keepdims=True)
                      - xh * (dxhat * xh).mean(axis=reduce_axes, keepdims=True))
    else:
        dxv = ivar * dxhat
    # Centring x costs any float64 computation u * |x| absolutely; normalizing divides
    # that by sqrt(var + eps). kappa bounds the error in xhat that this alone causes.
    kappa = 8 * np.finfo(np.float64).eps * np.abs(x).max() * float(np.max(ivar))
    return (out, dxv.reshape(x.shape), (dout * xhat).sum(axis=param_axes), dout.sum(axis=param_axes),
            (kappa, np.abs(xhat).max()))


TOL = {np.float32: 2e-5, np.float64: 1e-10}


def assert_matches(got, want, x, dout, gamma, dtype, what=""):
    """out, dx, dgamma, dbeta within stated tolerances: TOL relative to the size of each
    quantity, plus what the conditioning of centring (kappa) allows any implementation."""
    out, dx, dgamma, dbeta = got
    r_out, r_dx, r_dg, r_db, (kappa, xhat_max) = want
    tol, g, d = TOL[dtype], np.abs(gamma).max(), np.abs(dout).max()
    for name, a in (("out", out), ("dx", dx), ("dgamma", dgamma), ("dbeta", dbeta)):
        assert np.isfinite(a).all(), f"{what} {name} not finite"
    assert out.dtype == dtype and dx.dtype == dtype, what
    np.testing.assert_allclose(out, r_out, rtol=0, atol=tol * (1 + np.abs(r_out).max()) + kappa * g,
                               err_msg=f"{what} out")
    # dx loses precision to cancellation among its three terms: judge it on their scale
    # (1 / sqrt(eps) ~ 316 bounds invstd)
    dx_scale = 1 + np.abs(r_dx).max() + d * g * 316
    np.testing.assert_allclose(dx, r_dx, rtol=0, atol=10 * tol * dx_scale + 4 * kappa * d * g * 316,
                               err_msg=f"{what} dx")
    # dgamma and dbeta come back in gamma's dtype: judge them at the coarser of the two
    tol = max(tol, TOL.get(np.asarray(dgamma).dtype.type, tol))
    sum_scale = 1 + np.abs(dout).sum() * (1 + xhat_max)
    np.testing.assert_allclose(np.ravel(dgamma), np.ravel(r_dg), rtol=0,
                               atol=tol * sum_scale + kappa * np.abs(dout).sum(), err_msg=f"{what} dg")
    np.testing.assert_allclose(np.ravel(dbeta), np.ravel(r_db), rtol=0, atol=tol * sum_scale, err_msg=f"{what} db")


# ----------------------------------------------------------------------------- strategies

dtypes = st.sampled_from([np.float32, np.float64])
offsets = st.sampled_from([0.0, 3.0, -1e3, 1e4, 1e8])
scales = st.sampled_from([1e-3, 1.0, 50.0, 1e18])
layouts = st.sampled_from(["c", "fortran", "reversed", "strided"])


def make_array(rng, shape, dtype, offset, scale, layout, constant_column=False):
    """Random data of ``shape`` laid out in memory as ``layout`` says (values are what count)."""
    x = offset + scale * rng.standard_normal(shape)
    if constant_column and len(shape) >= 2:
        x[:, 0] = offset
    x = x.astype(dtype)
    if layout == "fortran":
        return np.asfortranarray(x)
    if layout == "reversed":
        return np.ascontiguousarray(x[::-1])[::-1]
    if layout == "strided":
        wide = np.zeros((shape[0] * 2,) + shape[1:], dtype)
        wide[::2] = x
        return wide[::2]
    return x


@st.composite
def cases(draw, kind):
    """(x, gamma, beta, dout, G, dtype) for a norm ``kind``."""
    dtype, offset, scale, layout = draw(dtypes), draw(offsets), draw(scales), draw(layouts)
    if kind in ("batch", "layer"):
        shape = (draw(st.integers(2 if kind == "batch" else 1, 9)), draw(st.integers(1, 7)))
    elif kind == "rank3":
        shape = (draw(st.integers(2, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 4)))
    else:
        C = draw(st.integers(1, 6))
        shape = (draw(st.integers(1, 4)), C, draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        if kind == "spatial" and shape[0] * shape[2] * shape[3] < 2:
            shape = (2,) + shape[1:]
    C = shape[-1] if kind == "layer" else shape[1]
    G = draw(st.sampled_from([g for g in range(1, C + 1) if C % g == 0])) if kind == "group" else None
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = make_array(rng, shape, dtype, offset, scale, layout, draw(st.booleans()))
    param_dtype = draw(st.sampled_from([dtype, np.float32, np.float64, np.int64]))  # int: promoted
    if param_dtype == np.int64:
        gamma, beta = rng.integers(-3, 4, C), rng.integers(-3, 4, C)
    else:
        gamma, beta = rng.normal(1, 0.5, C).astype(param_dtype), rng.normal(0, 0.5, C).astype(param_dtype)
    dout = make_array(rng, shape, dtype, 0.0, 1.0, draw(layouts))
    return x, gamma, beta, dout, G, dtype


def batch_view(x):
    return x.shape, tuple(i for i in range(x.ndim) if i != 1), tuple(i for i in range(x.ndim) if i != 1)


def group_view(x, G):
    return (x.shape[0], G, -1), (2,), tuple(i for i in range(x.ndim) if i != 1)


def per_channel(a, x):
    return a.reshape((1, -1) + (1,) * (x.ndim - 2))


# ----------------------------------------------------------------------------- functional


@given(cases("batch"), st.sampled_from(["staged", "closed"]))
def test_functional_batchnorm_train(case, backward):
    x, gamma, beta, dout, _, dtype = case
    out, cache = F.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    bwd = F.batchnorm_backward if backward == "staged" else F.batchnorm_backward_alt
    got = (out, *bwd(dout, cache))
    assert_matches(got, reference(x, gamma, beta, dout, *batch_view(x)), x, dout, gamma, dtype, backward)


@given(cases("batch"))
def test_functional_batchnorm_test_mode(case):
    x, gamma, beta, dout, _, dtype = case
    rng = np.random.default_rng(0)
    rm, rv = rng.normal(size=x.shape[1]), rng.uniform(0.5, 2, x.shape[1])
    out, cache = F.batchnorm_forward(x, gamma, beta, {"mode": "test", "running_mean": rm, "running_var": rv})
    got = (out, *F.batchnorm_backward_alt(dout, cache))
    want = reference(x, gamma, beta, dout, *batch_view(x), fixed=(rm, rv))
    assert_matches(got, want, x, dout, gamma, dtype, "test mode")


@given(cases("layer"))
def test_functional_layernorm(case):
    x, gamma, beta, dout, _, dtype = case
    out, cache = F.layernorm_forward(x, gamma, beta, {})
    got = (out, *F.layernorm_backward(dout, cache))
    assert_matches(got, reference(x, gamma, beta, dout, x.shape, (1,), (0,)), x, dout, gamma, dtype)


@given(cases("spatial"))
def test_functional_spatial_batchnorm(case):
    x, gamma, beta, dout, _, dtype = case
    out, cache = F.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    got = (out, *F.spatial_batchnorm_backward(dout, cache))
    want = reference(x, per_channel(gamma, x), per_channel(beta, x), dout, *batch_view(x))
    assert_matches(got, want, x, dout, gamma, dtype)


@given(cases("group"), st.booleans())
def test_functional_groupnorm(case, four_d_gamma):
    x, gamma, beta, dout, G, dtype = case
    shape = (1, -1, 1, 1) if four_d_gamma else (-1,)
    out, cache = F.spatial_groupnorm_forward(x, gamma.reshape(shape), beta.reshape(shape), G, {})
    dx, dgamma, dbeta = F.spatial_groupnorm_backward(dout, cache)
    assert dgamma.shape == gamma.reshape(shape).shape
    want = reference(x, per_channel(gamma, x), per_channel(beta, x), dout, *group_view(x, G))
    assert_matches((out, dx, dgamma, dbeta), want, x, dout, gamma, dtype, f"G={G}")


# ----------------------------------------------------------------------------- kernels


@given(st.one_of(cases("batch"), cases("rank3"), cases("spatial")), st.sampled_from(["numba", "numpy"]))
def test_kernel_batchnorm(case, backend):
    x, gamma, beta, dout, _, dtype = case
    K.use_numpy(backend == "numpy")
    try:
        y, stats = K.batchnorm_forward(x, gamma, beta, training=True)
        got = (y, *K.batchnorm_backward(dout, x, gamma, stats))
        mean, var = K.batchnorm_stats(x)
        sums = K.batchnorm_grad_sums(dout, x, mean)
        dx_split = K.batchnorm_grad_input(dout, x, mean, stats.invstd, gamma, *sums, x.size // x.shape[1])
        y_split = K.batchnorm_normalize(x, mean, stats.invstd, gamma, beta)
    finally:
        K.use_numpy(False)
    want = reference(x, per_channel(gamma, x), per_channel(beta, x), dout, *batch_view(x))
    assert_matches(got, want, x, dout, gamma, dtype, backend)
    # the split batch norm's normalize is the fused forward's second half (to an FMA's rounding)
    np.testing.assert_allclose(y_split, y, rtol=0, atol=4 * np.finfo(dtype).eps * (1 + np.abs(y).max()))
    np.testing.assert_allclose(dx_split, got[1], rtol=0, atol=1e-6 * (1 + np.abs(got[1]).max()))
    np.testing.assert_allclose(var, stats.var, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=0)


@given(st.one_of(cases("layer"), cases("rank3")), st.sampled_from(["numba", "numpy"]))
def test_kernel_layernorm(case, backend):
    x, gamma, beta, dout, _, dtype = case
    D = x.shape[-1]
    gamma, beta = np.resize(gamma, D), np.resize(beta, D)
    K.use_numpy(backend == "numpy")
    try:
        y, stats = K.layernorm_forward(x, gamma, beta)
        got = (y, *K.layernorm_backward(dout, x, gamma, stats))
    finally:
        K.use_numpy(False)
    want = reference(x, gamma, beta, dout, x.shape, (x.ndim - 1,), tuple(range(x.ndim - 1)))
    assert_matches(got, want, x, dout, gamma, dtype, backend)


@given(cases("group"), st.sampled_from(["numba", "numpy"]))
def test_kernel_groupnorm(case, backend):
    x, gamma, beta, dout, G, dtype = case
    K.use_numpy(backend == "numpy")
    try:
        y, stats = K.groupnorm_forward(x, gamma, beta, G)
        got = (y, *K.groupnorm_backward(dout, x, gamma, G, stats))
    finally:
        K.use_numpy(False)
    want = reference(x, per_channel(gamma, x), per_channel(beta, x), dout, *group_view(x, G))
    assert_matches(got, want, x, dout, gamma, dtype, f"{backend} G={G}")


# ----------------------------------------------------------------------------- modules


@given(st.one_of(cases("batch"), cases("rank3"), cases("spatial")))
def test_nn_batchnorm_modules(case):
    x, gamma, beta, dout, _, dtype = case
    module = (nn.BatchNorm2d if x.ndim == 4 else nn.BatchNorm1d)(x.shape[1], dtype=dtype)
    module.params["weight"][:], module.params["bias"][:] = gamma, beta
    got = (module.forward(x), module.backward(dout), module.grads["weight"], module.grads["bias"])
    want = reference(x, per_channel(gamma, x), per_channel(beta, x), dout, *batch_view(x))
    assert_matches(got, want, x, dout, gamma, dtype)


@given(st.one_of(cases("layer"), cases("rank3")))
def test_nn_layernorm_module(case):
    x, gamma, beta, dout, _, dtype = case
    D = x.shape[-1]
    module = nn.LayerNorm(D, dtype=dtype)
    module.params["weight"][:], module.params["bias"][:] = np.resize(gamma, D), np.resize(beta, D)
    got = (module.forward(x), module.backward(dout), module.grads["weight"], module.grads["bias"])
    want = reference(x, np.resize(gamma, D), np.resize(beta, D), dout, x.shape, (x.ndim - 1,),
                     tuple(range(x.ndim - 1)))
    assert_matches(got, want, x, dout, gamma, dtype)


@given(cases("group"))
def test_nn_groupnorm_module(case):
    x, gamma, beta, dout, G, dtype = case
    module = nn.GroupNorm(G, x.shape[1], dtype=dtype)
    module.params["weight"][:], module.params["bias"][:] = gamma, beta
    got = (module.forward(x), module.backward(dout), module.grads["weight"], module.grads["bias"])
    want = reference(x, per_channel(gamma, x), per_channel(beta, x), dout, *group_view(x, G))
    assert_matches(got, want, x, dout, gamma, dtype)


@given(st.one_of(cases("batch"), cases("rank3"), cases("spatial")))
def test_torch_batch_norm(case):
    torch = pytest.importorskip("torch")
    import normgrad.torch as nt

    x, gamma, beta, dout, _, dtype = case
    xt = torch.from_numpy(np.array(x)).requires_grad_()
    gt, bt = (torch.from_numpy(a.astype(dtype)).requires_grad_() for a in (gamma, beta))  # module parameters
    y = nt.batch_norm(xt, None, None, gt, bt, training=True)
    y.backward(torch.from_numpy(np.array(dout)))
    got = (y.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy())
    want = reference(x, per_channel(gamma, x), per_channel(beta, x), dout, *batch_view(x))
    assert_matches(got, want, x, dout, gamma, dtype)


# ----------------------------------------------------------------------------- hostile input

GOOD = np.random.default_rng(1).normal(3, 2, (4, 3, 2, 2))
X, D, GAMMA, BETA = "x", "dout", "gamma", "beta"
ALIASES = {X: ("x", "input"), D: ("dout", "dy"), GAMMA: ("gamma",), BETA: ("beta",)}


def _calls(x, gamma, beta, dout):
    """Every public norm entry point: name -> (call, the arguments it takes). 2-D ones get x[:, :, 0, 0]."""
    x2 = x[:, :, 0, 0] if isinstance(x, np.ndarray) and x.ndim == 4 else x
    d2 = dout[:, :, 0, 0] if isinstance(dout, np.ndarray) and dout.ndim == 4 else dout
    _, bn_cache = F.batchnorm_forward(GOOD[:, :, 0, 0], np.ones(3), np.zeros(3), {"mode": "train"})
    _, sbn_cache = F.spatial_batchnorm_forward(GOOD, np.ones(3), np.zeros(3), {"mode": "train"})
    _, ln_cache = F.layernorm_forward(GOOD[:, :, 0, 0], np.ones(3), np.zeros(3), {})
    _, gn_cache = F.spatial_groupnorm_forward(GOOD, np.ones(3), np.zeros(3), 3, {})
    _, stats = K.batchnorm_forward(GOOD, np.ones(3), np.zeros(3), training=True)
    _, gstats = K.groupnorm_forward(GOOD, np.ones(3), np.zeros(3), 3)
    forward, backward = {X, GAMMA, BETA}, {D}
    return {
        "F.batchnorm_forward": (lambda: F.batchnorm_forward(x2, gamma, beta, {"mode": "train"}), forward),
        "F.batchnorm_forward test": (lambda: F.batchnorm_forward(x2, gamma, beta, {"mode": "test"}), forward),
        "F.batchnorm_backward": (lambda: F.batchnorm_backward(d2, bn_cache), backward),
        "F.batchnorm_backward_alt": (lambda: F.batchnorm_backward_alt(d2, bn_cache), backward),
        "F.layernorm_forward": (lambda: F.layernorm_forward(x2, gamma, beta, {}), forward),
        "F.layernorm_backward": (lambda: F.layernorm_backward(d2, ln_cache), backward),
        "F.spatial_batchnorm_forward": (lambda: F.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"}),
                                        forward),
        "F.spatial_batchnorm_backward": (lambda: F.spatial_batchnorm_backward(dout, sbn_cache), backward),
        "F.spatial_groupnorm_forward": (lambda: F.spatial_groupnorm_forward(x, gamma, beta, 3, {}), forward),
        "F.spatial_groupnorm_backward": (lambda: F.spatial_groupnorm_backward(dout, gn_cache), backward),
        "K.batchnorm_forward": (lambda: K.batchnorm_forward(x, gamma, beta, training=True), forward),
        "K.batchnorm_backward": (lambda: K.batchnorm_backward(dout, GOOD, np.ones(3), stats), backward),
        "K.batchnorm_stats": (lambda: K.batchnorm_stats(x), {X}),
        "K.layernorm_forward": (lambda: K.layernorm_forward(x2, gamma, beta), forward),
        "K.groupnorm_forward": (lambda: K.groupnorm_forward(x, gamma, beta, 3), forward),
        "K.groupnorm_backward": (lambda: K.groupnorm_backward(dout, GOOD, np.ones(3), 3, gstats), backward),
        "nn.BatchNorm2d": (lambda: nn.BatchNorm2d(3).forward(x), {X}),
        "nn.GroupNorm": (lambda: nn.GroupNorm(3, 3).forward(x), {X}),
        "nn.LayerNorm": (lambda: nn.LayerNorm(3).forward(x2), {X}),
    }


def _poke(a, r, value):
    """A copy of ``a`` with ``value`` at a place chosen by ``r``; in 4-D data, a place the
    2-D calls' slice [:, :, 0, 0] sees too."""
    a = np.array(a, dtype=np.float64)
    if a.ndim == 4:
        a[r % a.shape[0], (r // a.shape[0]) % a.shape[1], 0, 0] = value
    else:
        a.flat[r % a.size] = value
    return a


HOSTILE = {
    # what is wrong -> (x, gamma, beta, dout, the arguments damaged)
    "NaN in x": lambda r: (_poke(GOOD, r, np.nan), np.ones(3), np.zeros(3), GOOD, {X}),
    "Inf in x": lambda r: (_poke(GOOD, r, -np.inf), np.ones(3), np.zeros(3), GOOD, {X}),
    "NaN in dout": lambda r: (GOOD, np.ones(3), np.zeros(3), _poke(GOOD, r, np.nan), {D}),
    "Inf in dout": lambda r: (GOOD, np.ones(3), np.zeros(3), _poke(GOOD, r, np.inf), {D}),
    "Inf in gamma": lambda r: (GOOD, _poke(np.ones(3), r, np.inf), np.zeros(3), GOOD, {GAMMA}),
    "NaN in beta": lambda r: (GOOD, np.ones(3), _poke(np.zeros(3), r, np.nan), GOOD, {BETA}),
    "integer data": lambda r: (GOOD.astype(np.int64), np.ones(3), np.zeros(3), GOOD.astype(np.int64), {X, D}),
    "bool data": lambda r: (GOOD > 3, np.ones(3), np.zeros(3), GOOD > 3, {X, D}),
    "object data": lambda r: (GOOD.astype(object), np.ones(3), np.zeros(3), GOOD.astype(object), {X, D}),
    "complex data": lambda r: (GOOD.astype(complex), np.ones(3), np.zeros(3), GOOD.astype(complex), {X, D}),
    "string data": lambda r: (GOOD.astype(str), np.ones(3), np.zeros(3), GOOD.astype(str), {X, D}),
    "0-d data": lambda r: (np.float64(1.0), np.ones(3), np.zeros(3), np.float64(1.0), {X, D}),
    "empty data": lambda r: (GOOD[:0], np.ones(3), np.zeros(3), GOOD[:0], {X, D}),
    "1-D data": lambda r: (GOOD[:, 0, 0, 0], np.ones(3), np.zeros(3), GOOD[:, 0, 0, 0], {X, D}),
    "short gamma": lambda r: (GOOD, np.ones(2), np.zeros(3), GOOD, {GAMMA}),
    "long beta": lambda r: (GOOD, np.ones(3), np.zeros(4), GOOD, {BETA}),
    "2-D gamma": lambda r: (GOOD, np.ones((3, 3)), np.zeros(3), GOOD, {GAMMA}),
    "bool gamma": lambda r: (GOOD, np.ones(3, bool), np.zeros(3), GOOD, {GAMMA}),
}


@given(st.sampled_from(sorted(HOSTILE)), st.integers(0, 10_000))
def test_hostile_input_raises_a_clear_error(what, where):
    x, gamma, beta, dout, damaged = HOSTILE[what](where)
    for name, (call, takes) in _calls(x, gamma, beta, dout).items():
        hit = takes & damaged
        try:
            call()
        except (ValueError, TypeError) as err:
            message = str(err)
            assert hit, f"{name} refused {what}, which it does not take: {message}"
            assert type(err).__module__ in ("builtins", "normgrad.core.validate"), (name, what, repr(err))
            names = [a for arg in (hit if what != "1-D data" else takes) for a in ALIASES[arg]]
            assert any(re.search(rf"\b{n}\b", message) for n in names), (name, what, message)
            continue
        assert not hit, f"{name} accepted {what}"


BAD_SETTINGS = {
    # setting -> values it must refuse, each naming the setting
    "eps": [0.0, -1e-5, float("nan"), float("inf"), 1e300, "1e-5", True, np.array([1e-5, 1e-5])],
    "momentum": [-0.1, 1.5, float("nan"), "0.9"],
    "mode": ["eval", None, 1, "TRAIN"],
    "G": [0, 2, -3, 1.5, True, "3"],
}


def _setting_calls(setting, value):
    x4, x2, ones, zeros = GOOD, GOOD[:, :, 0, 0], np.ones(3), np.zeros(3)
    if setting == "eps":
        return [lambda: F.batchnorm_forward(x2, ones, zeros, {"mode": "train", "eps": value}),
                lambda: F.layernorm_forward(x2, ones, zeros, {"eps": value}),
                lambda: F.spatial_groupnorm_forward(x4, ones, zeros, 3, {"eps": value}),
                lambda: K.batchnorm_forward(x4, ones, zeros, training=True, eps=value),
                lambda: K.layernorm_forward(x2, ones, zeros, eps=value),
                lambda: nn.BatchNorm2d(3, eps=value)]
    if setting == "momentum":
        return [lambda: F.batchnorm_forward(x2, ones, zeros, {"mode": "train", "momentum": value}),
                lambda: nn.BatchNorm1d(3, momentum=value)]
    if setting == "mode":
        return [lambda: F.batchnorm_forward(x2, ones, zeros, {"mode": value}),
                lambda: F.spatial_batchnorm_forward(x4, ones, zeros, {"mode": value})]
    return [lambda: F.spatial_groupnorm_forward(x4, ones, zeros, value, {}),
            lambda: K.groupnorm_forward(x4, ones, zeros, value),
            lambda: nn.GroupNorm(value, 3)]


@given(st.sampled_from([(s, i) for s, values in BAD_SETTINGS.items() for i in range(len(values))]))
def test_bad_settings_raise_naming_the_setting(choice):
    setting, i = choice
    value = BAD_SETTINGS[setting][i]
    aliases = {"G": ("G", "num_groups", "num_channels")}.get(setting, (setting,))
    for call in _setting_calls(setting, value):
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        assert any(a in str(info.value) for a in aliases), (setting, value, str(info.value))
