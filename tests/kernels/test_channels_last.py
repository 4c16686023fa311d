"""The channels-last kernels (group and instance norm on NHWC memory, x viewed as (N, L, C)):
Numba and NumPy equal the contiguous row kernels' results on the same data, transposed, in
float64 and float32, at sizes on both sides of the parallel threshold and with groups of one
channel (instance norm) and of all channels."""

from __future__ import annotations

import numpy as np
import pytest

from normgrad import kernels as K
from normgrad.core.specs import SPECS


@pytest.fixture(params=["numba", "numpy"])
def backend(request):
    K.use_numpy(request.param == "numpy")
    yield request.param
    K.use_numpy(False)


CASES = {"group, small": ("group", (4, 12, 5, 7), 3), "group, parallel": ("group", (17, 32, 24, 9), 8),
         "instance": ("instance", (3, 6, 4, 4), None), "one group": ("group", (5, 8, 3, 3), 1)}


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-11), (np.float32, 3e-5)])
@pytest.mark.parametrize("case", list(CASES))
def test_channels_last_equals_the_contiguous_kernels(case, dtype, tol, backend):
    norm, shape, G = CASES[case]
    spec = SPECS[norm]
    rng = np.random.default_rng(4)
    N, C = shape[:2]
    x = (rng.normal(3.0, 2.0, shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    gamma, beta = rng.normal(1.0, 0.5, C), rng.standard_normal(C)
    y, stats = K.norm_forward(spec, x, gamma, beta, G=G)
    dx, dgamma, dbeta = K.norm_backward(spec, dy, x, gamma, stats, G=G)

    def last(a):  # (N, C, *spatial) -> (N, *spatial, C), C-contiguous
        return np.ascontiguousarray(np.moveaxis(a, 1, -1))

    groups = spec.num_groups(C, G)
    xl, dyl = last(x), last(dy)
    yl, dxl = np.empty_like(xl), np.empty_like(xl)
    stats_l = K.forward_stages(spec, xl, gamma, beta, groups, 1e-5, yl, channels_last=True)
    dgamma_l, dbeta_l = K.backward_stages(spec, dyl, xl, gamma, groups, stats_l, dxl, channels_last=True)
    for got, want in [(yl, last(y)), (dxl, last(dx)), (dgamma_l, dgamma), (dbeta_l, dbeta),
                      *zip(stats_l, stats)]:
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))
