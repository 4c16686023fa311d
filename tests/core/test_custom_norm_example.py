"""examples/custom_norm.py: a norm normgrad does not have, declared in one file with the
public API only, served by every front end and backend."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_norm.py"
PATHS = ("functional (NumPy)", "kernels (float32)", "normgrad.nn", "normgrad.nn, evaluation",
         "normgrad.torch, eager", "normgrad.torch, compiled")


def test_the_declaration_is_one_short_file_of_public_api():
    source = EXAMPLE.read_text()
    assert len(source.splitlines()) <= 80
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        assert not any(part.startswith("_") for name in names for part in name.split(".")), names
    assert source.count("NormSpec(") == 1


def test_every_path_agrees_with_the_float64_reference():
    result = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    errors = dict(re.findall(r"^(.+?)\s+largest error (\S+)$", result.stdout, re.M))
    assert tuple(errors) == PATHS
    assert all(float(e) <= 1e-4 for e in errors.values())
    assert "all paths agree" in result.stdout
