"""Every example in examples/ runs (README.md's and docs/'s code blocks: tests/test_docs.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path):
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_check_your_own_finds_the_planted_bug():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "check_your_own.py")], capture_output=True, text=True, timeout=120
    ).stdout
    assert "dx error is the mean path: True" in out
    dx_err = float(re.search(r"dx\s+vs numeric gradient: ([0-9.e+-]+)", out).group(1))
    assert dx_err > 1e-2


# README.md's and docs/'s examples, their printed output included, run in tests/test_docs.py.
