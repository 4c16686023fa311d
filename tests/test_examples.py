"""Every example in examples/ and every Python block in README.md runs."""

from __future__ import annotations

import re
import runpy
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


def test_readme_output_of_example_is_current():
    """The output README.md shows for check_your_own.py is what it prints now."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "check_your_own.py")], capture_output=True, text=True, timeout=120
    ).stdout
    assert out.strip() in (ROOT / "README.md").read_text()


BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "block.py"
    script.write_text(BLOCKS[index])
    runpy.run_path(str(script), run_name="__main__")


def test_readme_has_python_blocks():
    assert BLOCKS
