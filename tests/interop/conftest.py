"""Every test here starts from a torch seed derived from its name: reproducible runs."""

from __future__ import annotations

import zlib

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_torch(request):
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))
