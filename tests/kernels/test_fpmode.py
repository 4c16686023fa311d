"""The switch that flushes subnormal floats to zero on the calling thread."""

from __future__ import annotations

import numpy as np
import pytest

from normgrad import kernels as K
from normgrad.kernels import _fpmode


@pytest.mark.skipif(not _fpmode.SUPPORTED, reason="MXCSR exists on x86-64 only")
def test_flushing_denormals_zeroes_subnormals_and_restores_the_mode():
    tiny = np.finfo(np.float32).tiny
    x = np.array([tiny, 1.0], np.float32)
    assert (x / 4)[0] > 0  # subnormal result, kept by default
    with K.flushing_denormals() as supported:
        assert supported
        np.testing.assert_array_equal(x / 4, [0.0, 0.25])  # the result is flushed
        assert K.set_flush_denormal(True)  # it was on inside the block
    assert (x / 4)[0] == np.float32(tiny / 4)  # restored afterwards
    assert not K.set_flush_denormal(False)


def test_switch_does_nothing_where_unsupported(monkeypatch):
    monkeypatch.setattr(_fpmode, "SUPPORTED", False)
    assert _fpmode.set_flush_denormal(True) is False
    tiny = np.finfo(np.float64).tiny
    assert (np.array([tiny]) / 4)[0] > 0
