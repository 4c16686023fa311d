"""The causes of issue 25, each shown on a file of its own: judging on the gradient's own
scale, probing what a forward computes, causality, unfinished code, the student's own shape
conventions, isolation of the user's code, the Python 2 hint, no "FILE:None"."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from rich.console import Console

from normgrad import diagnose
from normgrad.cli import main
from normgrad.diagnose import analysis, loader, probe, render

CORPUS = Path(__file__).parent / "corpus"
BASE = (CORPUS / "_bn_base.py").read_text()
LAYERNORM = '''

def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (xhat, gamma, var, eps)


def layernorm_backward(dout, cache):
    xhat, gamma, var, eps = cache
    D = dout.shape[1]
    dxhat = dout * gamma
    dx = (D * dxhat - dxhat.sum(1, keepdims=True) - xhat * (dxhat * xhat).sum(1, keepdims=True))
    dx = dx / (D * np.sqrt(var + eps))
    return dx, (dout * xhat).sum(0), dout.sum(0)
'''


def _in_process(tmp_path, source, name="user.py"):
    path = tmp_path / name
    path.write_text(source)
    return diagnose.check(loader.load(path, probe.describe_exception).namespace)


def _text(report) -> str:
    out = io.StringIO()
    render.print_report(Console(file=out, width=400), report)
    return out.getvalue()


# ---------------------------------------------------------------- the gradient's own scale

def test_rounding_noise_on_a_zero_gradient_is_not_a_failure(tmp_path):
    """With D = 1 layer norm's true dx is exactly 0: noise of 3e-14 has a CS231n rel_error of
    ~1 (through its 1e-8 floor) but is nothing on the gradient's scale; a real bug still fails."""
    noisy = LAYERNORM.replace("return dx, (dout * xhat)", "dx = dx + 3e-14 * dout\n    return dx, (dout * xhat)")
    report = _in_process(tmp_path, "import numpy as np\n" + noisy)
    f = report["layernorm_backward"]
    assert f.ok and f.errors["dx"] < 1e-12, f.to_json()
    case = probe.cases("layer")[0]  # N = 2, D = 1
    assert analysis.rel_err(3e-14 * case.dout, np.zeros_like(case.dout)) > 1e-7  # what the notebook's check says
    buggy = LAYERNORM.replace(" - dxhat.sum(1, keepdims=True)", "")
    assert {d.id for d in _in_process(tmp_path, "import numpy as np\n" + buggy)["layernorm_backward"].diagnoses} == {
        "missing-mean-path"}


def test_the_notebook_figure_is_printed_beside_the_verdict():
    report = diagnose.check_file(CORPUS / "correct_eps_scaled.py", timeout=20)
    line = next(l for l in _text(report).splitlines() if l.startswith("batchnorm_backward_alt"))
    assert line.startswith("batchnorm_backward_alt: ok   error dx ") and "   notebook rel_error dx " in line
    assert report["batchnorm_backward_alt"].notebook["dx"] > 1e-10  # eps * 1.0001 shows in the notebook's figure


# ---------------------------------------------------------------- probing the forward

def test_probes_name_the_axes_a_group_norm_reduces_over(tmp_path):
    """Batch-norm statistics in a group norm: outside the mistakes enumerated, found by the probes."""
    source = '''import numpy as np

def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """- gamma: Scale parameter, of shape (1, C, 1, 1)"""
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    return gamma * (x - mu) / np.sqrt(var + gn_param.get("eps", 1e-5)) + beta, None
'''
    f = _in_process(tmp_path, source)["spatial_groupnorm_forward"]
    details = {d.id: d.detail for d in f.diagnoses}
    assert f.outcome == "wrong" and "your statistics reduce over axes (0, 2, 3)" in details["wrong-axis"], details
    assert "they should reduce over (1, 2, 3)" in details["wrong-axis"]


def test_probes_see_eps_and_gamma_through_a_mix_no_enumeration_holds(tmp_path):
    source = (CORPUS / "bug_groupnorm_gamma_tile.py").read_text().replace(
        "np.sqrt(var + eps)", "(np.sqrt(var) + eps)")
    f = _in_process(tmp_path, source)["spatial_groupnorm_forward"]
    details = {d.id: d.detail for d in f.diagnoses}
    assert set(details) == {"gamma-beta-mapping", "eps-outside-sqrt"}, details
    assert "for an x whose variance is eps your output's std is" in details["eps-outside-sqrt"]
    assert "is in channel 0 but gets gamma[1]" in details["gamma-beta-mapping"]


def test_groups_of_G_channels_are_said_with_the_groups():
    f = diagnose.check(loader.load(CORPUS / "bug_groupnorm_groups_of_G.py", probe.describe_exception).namespace)
    detail = f["spatial_groupnorm_forward"].diagnoses[0].detail
    assert detail == ("with C = 6 and G = 3 your groups are channels {0, 1, 2}, {3, 4, 5}; they should be 3 groups "
                      "of C // G = 2: {0, 1}, {2, 3}, {4, 5}")


def test_a_reduction_without_axis_is_said_so():
    f = diagnose.check(loader.load(CORPUS / "bug_sum_no_axis.py", probe.describe_exception).namespace)
    details = {d.id: d.detail for d in f["batchnorm_forward"].diagnoses}
    assert details["wrong-axis"] == "out: statistics over axes (0, 1) (every axis: a reduction without axis=), not (0,)"


# ---------------------------------------------------------------- causality, unfinished

def test_a_forward_mistake_is_not_blamed_on_the_backward():
    report = diagnose.check(loader.load(CORPUS / "bug_eps_outside_course_backward.py",
                                        probe.describe_exception).namespace)
    backward = report["batchnorm_backward_alt"]
    assert backward.ok and not backward.diagnoses
    assert backward.notes[0].startswith("your backward is right for your forward (it is exact for the cache your "
                                        "forward gives it")
    assert "fix the forward: batchnorm_forward's output differs from the reference" in backward.notes[0]
    assert report.exit_code == 1  # the forward is still wrong


def test_unfinished_code_says_where_it_stops():
    report = diagnose.check(loader.load(CORPUS / "unfinished_asserts.py", probe.describe_exception).namespace)
    f = report["layernorm_backward"]
    assert f.outcome == "not implemented yet" and f.exception is None
    assert f.diagnoses[0].detail == 'still to write: all of it (it stops at `assert False, "TODO"`, line 16)'


# ---------------------------------------------------------------- the student's own conventions

def test_the_gamma_shape_the_docstring_states_is_the_one_judged(tmp_path):
    source = (CORPUS / "bug_groupnorm_7d.py").read_text()
    f = _in_process(tmp_path, source)["spatial_groupnorm_forward"]
    assert f.outcome == "wrong" and {d.id for d in f.diagnoses} == {"extra-dimensions"}
    assert "gamma and beta were passed with shape (1, C, 1, 1), as your docstring states" in f.notes
    stated_c = source.replace("of shape (1, C, 1, 1)", "of shape (C,)")
    f = _in_process(tmp_path, stated_c, "c.py")["spatial_groupnorm_forward"]
    assert f.ok and "gamma and beta were passed with shape (C,), as your docstring states" in f.notes


def test_running_statistics_are_seeded_in_the_shape_the_code_creates(tmp_path):
    assert probe.seed_shape({"running_mean": {"shape": [1, 3, 1, 1], "data": [0, 0, 0]}}, 3) == (1, -1, 1, 1)
    assert probe.seed_shape({"running_mean": {"shape": [3], "data": [0, 0, 0]}}, 3) is None
    f = diagnose.check(loader.load(CORPUS / "correct_spatial_running_4d.py",
                                   probe.describe_exception).namespace)["spatial_batchnorm_forward"]
    assert f.ok, f.to_json()


# ---------------------------------------------------------------- isolation

def test_the_users_code_runs_in_a_temporary_working_directory(tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    path = tmp_path / "writes.py"
    path.write_text('with open("written_at_import.txt", "a") as f:\n    f.write("x")\n' + BASE)
    monkeypatch.chdir(here)
    report = diagnose.check_file(path, timeout=20)
    assert report.ok
    assert list(here.iterdir()) == [] and not (tmp_path / "written_at_import.txt").exists()


def test_a_hang_in_a_forward_leaves_the_other_verdicts_intact(tmp_path):
    path = tmp_path / "hangs.py"
    path.write_text(BASE + LAYERNORM.replace('eps = ln_param.get("eps", 1e-5)\n    mu',
                                             'eps = ln_param.get("eps", 1e-5)\n    while True:\n        pass\n    mu'))
    report = diagnose.check_file(path, timeout=2)
    assert report["layernorm_forward"].status == "timeout"
    backward = report["layernorm_backward"]
    assert backward.outcome == "not checked" and backward.notes == [
        "not checked: it needs layernorm_forward to build the cache, and layernorm_forward did not finish within 2 s "
        "(an endless loop?)"]
    assert report["batchnorm_forward"].ok and report["batchnorm_backward_alt"].ok
    assert report.summary() == "2 ok, 1 wrong, 1 not checked"


# ---------------------------------------------------------------- Python 2, locations

def test_a_python2_file_gets_a_one_line_hint(capsys):
    path = CORPUS / "python2_layers.py"
    assert main(["check", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    hints = [l for l in lines if l.startswith("hint: ")]
    assert hints == ["hint: this is Python 2 code (xrange at line 38: for i in xrange(x.shape[0]):); normgrad check "
                     "runs Python 3: write range, and the same for the rest of the file"]
    assert lines.index(hints[0]) == len(lines) - 2  # beside the per-function results, before the summary
    assert "    xrange is Python 2: in Python 3 use range" in lines
    assert main(["check", str(CORPUS / "correct_eps_scaled.py"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hints"] == []


def test_a_location_without_a_line_never_prints_none():
    assert render.where({"file": "layers.py", "line": None}) == " at layers.py"
    assert render.where({"file": "layers.py", "line": 7, "when": "N = 2"}) == " at layers.py:7 when N = 2"
    report = diagnose.Report("layers.py", load_error=probe.error_info("load-failed", "it died", "layers.py"))
    assert _text(report) == "cannot check layers.py: load-failed: it died at layers.py\n"


def test_a_backward_whose_forward_caches_nothing_yet_is_not_checked(tmp_path):
    source = BASE.replace("cache = (xhat, gamma, var, eps)", "cache = None  # TODO")
    report = _in_process(tmp_path, source)
    assert report["batchnorm_forward"].ok
    backward = report["batchnorm_backward_alt"]
    assert backward.outcome == "not checked" and backward.notes == [
        "needs a working batchnorm_forward to build the cache: it returns None as its cache (still to write?)"]


def test_a_layer_norm_built_on_batchnorm_forward_gets_the_mode_the_notebook_passes(tmp_path):
    source = BASE + '''

def layernorm_forward(x, gamma, beta, ln_param):
    ln_param["mode"]  # the notebook's ln_param has it; a layer norm that reads it is not wrong
    out, cache = batchnorm_forward(x.T, np.ones((x.shape[1], 1)), np.zeros((x.shape[1], 1)),
                                   {"mode": "train", "eps": ln_param.get("eps", 1e-5)})
    return gamma * out.T + beta, cache
'''
    assert _in_process(tmp_path, source)["layernorm_forward"].ok
