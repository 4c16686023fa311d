"""normgrad check loads what a learner really has: a layers.py inside its course package,
files with Python 2 syntax or an unfinished function elsewhere, slow imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from normgrad import diagnose

CORPUS = Path(__file__).parent / "corpus"
CORRECT = (CORPUS / "correct_2024_tuple.py").read_text()
NORMS = {"batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt", "layernorm_forward",
         "layernorm_backward", "spatial_batchnorm_forward", "spatial_batchnorm_backward",
         "spatial_groupnorm_forward", "spatial_groupnorm_backward"}


def _all_ok(report):
    return {f.name for f in report.functions if f.ok}


def test_a_file_inside_a_package_imports_its_siblings_from_any_directory(tmp_path):
    package = tmp_path / "assignment2" / "cs231n"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "layer_utils.py").write_text("from .layers import *\n\ndef helper():\n    return 1\n")
    (package / "layers.py").write_text("from cs231n.layer_utils import helper\nfrom . import layer_utils\n" + CORRECT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-m", "normgrad", "check", str(package / "layers.py"), "--json"],
                         cwd=elsewhere, capture_output=True, text=True, timeout=300)
    report = json.loads(out.stdout)
    assert out.returncode == 0, out.stdout
    assert set(report["functions"]) == NORMS and report["notes"] == []  # imported whole, as a package


def test_python2_syntax_in_an_unrelated_function(tmp_path):
    path = tmp_path / "layers.py"
    path.write_text(CORRECT + "\n\ndef conv_forward_naive(x, w, b, conv_param):\n    print 'todo'\n"
                    "    return None, None\n")
    report = diagnose.check_file(path, timeout=20)
    assert _all_ok(report) == NORMS
    assert "extracted and loaded one by one" in report.notes[0]
    assert "conv_forward_naive" not in report.notes[1] and "SyntaxError" in report.notes[1]


def test_an_unfinished_function_that_does_not_parse(tmp_path):
    path = tmp_path / "layers.py"
    path.write_text(CORRECT.replace("def layernorm_backward(dout, cache):\n",
                                    "def dropout_backward(dout, cache):\n    if True:\n    # TODO\n\n"
                                    "def layernorm_backward(dout, cache):\n", 1))
    report = diagnose.check_file(path, timeout=20)
    assert _all_ok(report) == NORMS
    assert "IndentationError" in report.notes[1]


def test_a_norm_function_with_an_empty_body_is_unfinished(tmp_path):
    path = tmp_path / "layers.py"
    path.write_text(CORRECT.replace('''def layernorm_backward(dout, cache):
    x_norm, gamma, var, eps = cache''', '''def layernorm_backward(dout, cache):
    # TODO: Implement the backward pass for layer norm.
def _unused():
    x_norm, gamma, var, eps = cache'''))
    report = diagnose.check_file(path, timeout=20)
    f = report["layernorm_backward"]
    assert f.outcome == "not implemented yet" and f.exception["type"] == "IndentationError"
    lines = path.read_text().splitlines()
    start, end = lines.index("def layernorm_backward(dout, cache):") + 1, lines.index("def _unused():") + 1
    assert f.exception["file"] == str(path.resolve()) and start < f.exception["line"] <= end
    assert report.exit_code == 0 and report.summary() == "8 ok, 1 not implemented yet"


def test_missing_course_modules_are_skipped(tmp_path):
    path = tmp_path / "layers.py"
    path.write_text("from cs231n.im2col import *\n" + CORRECT)
    report = diagnose.check_file(path, timeout=20)
    assert _all_ok(report) == NORMS
    assert "ModuleNotFoundError" in report.notes[0] and "lines 1-1" in report.notes[1]


def test_the_timeout_counts_the_functions_own_run_not_loading(tmp_path):
    path = tmp_path / "slow_import.py"
    path.write_text("import time\ntime.sleep(1.5)\n" + (CORPUS / "_bn_base.py").read_text())
    report = diagnose.check_file(path, timeout=1.0)  # loading alone takes longer than that
    assert _all_ok(report) == {"batchnorm_forward", "batchnorm_backward_alt"}, report.dumps()


def test_html_report_for_notebooks():
    from normgrad.diagnose import loader, probe

    loaded = loader.load(CORPUS / "partly_done.py", probe.describe_exception)
    page = diagnose.check(loaded.namespace)._repr_html_()
    assert "1 ok, 4 not implemented yet, 1 not checked" in page
    assert "<code>not-implemented</code>" in page and "<table>" in page
    assert os.linesep not in page.split("<table>")[1].split("</tr>")[0]  # one row per function, no stray lines
