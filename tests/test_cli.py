"""The command line, run in-process through main(argv) as README.md shows it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from normgrad.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_and_passes_its_gradient_checks(capsys):
    assert main(["demo", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "Gradient check" in out
    for layer in ("batchnorm", "layernorm", "spatial", "groupnorm"):
        assert layer in out
    assert "FAIL" not in out
    # the large-mean table shows normgrad accurate and the naive formula not
    errors = dict(re.findall(r"(normgrad|naive E\[x\^2\]-E\[x\]\^2)\s*│\s*([0-9.e+-]+)", out))
    assert float(errors["normgrad"]) < 1e-3 < float(errors["naive E[x^2]-E[x]^2"])


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "normgrad", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "demo" in result.stdout


def test_readme_commands_are_the_ones_run_sh_and_ci_provide():
    """README's two set-up commands exist in run.sh, and CI runs exactly the test one."""
    readme = (ROOT / "README.md").read_text()
    assert "./run.sh demo" in readme and "./run.sh test" in readme
    run_sh = (ROOT / "run.sh").read_text()
    assert re.search(r"^\s*demo\)", run_sh, re.M) and re.search(r"^\s*test\)", run_sh, re.M)
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1].strip() == "./run.sh test"


def test_core_import_does_not_import_torch():
    code = "import sys, normgrad, normgrad.functional, normgrad.gradcheck; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_readme_graph_picture_exists_and_is_a_png():
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme):
        data = (ROOT / target).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", target
