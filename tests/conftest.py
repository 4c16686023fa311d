"""Shared fixtures: seeded random data."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name, so every test is reproducible."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)



# Property-based tests (tests/property): a fixed example budget, derandomized, so the
# suite takes the same time and finds the same things on every run.
from hypothesis import settings  # noqa: E402

settings.register_profile("normgrad", max_examples=200, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("search", max_examples=3000, deadline=None, derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("NORMGRAD_HYPOTHESIS", "normgrad"))
