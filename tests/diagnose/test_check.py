"""`normgrad check`: a corpus of buggy implementations, each diagnosed with the right id;
no false alarms on correct ones; hangs, crashes, exits and floods handled in time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from normgrad import diagnose
from normgrad.cli import main

CORPUS = Path(__file__).parent / "corpus"
CORRECT = (CORPUS / "correct_staged.py").read_text()
ALL = set(diagnose.FUNCTIONS)

FIX_FORWARD = "right for your forward"  # the backward is ok, with the note that the forward is what to fix

# name -> (edits to the correct file: (old, new, count), {function: expected ids, None (wrong, no id asserted)
# or FIX_FORWARD})
BUGS = {
    "unbiased_variance": (
        [("var = np.sum(xmu ** 2, axis=0) / N", "var = np.sum(xmu ** 2, axis=0) / (N - 1)", 1)],
        {"batchnorm_forward": {"unbiased-variance"}, "spatial_batchnorm_forward": {"unbiased-variance"},
         # the backward passes are exact for the forward's (wrong) cache: right for that forward
         "batchnorm_backward": FIX_FORWARD, "batchnorm_backward_alt": FIX_FORWARD,
         "spatial_batchnorm_backward": FIX_FORWARD}),
    "missing_mean_path": (
        [("return dx1 + dx2, dgamma, dbeta", "return dx1, dgamma, dbeta", 1)],
        {"batchnorm_backward": {"missing-mean-path"}}),
    "missing_variance_path": (
        [("dx1 = dxmu1 + dxmu2", "dx1 = dxmu1", 1)],
        {"batchnorm_backward": {"missing-variance-path"}}),
    "only_direct_path": (
        [("return dx1 + dx2, dgamma, dbeta", "return dxmu1, dgamma, dbeta", 1)],
        {"batchnorm_backward": {"missing-mean-path", "missing-variance-path"}}),
    "wrong_axis_backward": (
        [("dx = (N * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0)) * ivar / N",
          "dx = (N * dxhat - dxhat.sum(1, keepdims=True) - xhat * (dxhat * xhat).sum(1, keepdims=True)) * ivar / N", 1)],
        {"batchnorm_backward_alt": {"wrong-axis"}, "spatial_batchnorm_backward": None}),
    "wrong_axis_layernorm": (
        [("mu = x.mean(axis=1, keepdims=True)\n    var = ((x - mu) ** 2).mean(axis=1, keepdims=True)",
          "mu = x.mean(axis=0, keepdims=True)\n    var = ((x - mu) ** 2).mean(axis=0, keepdims=True)", 1)],
        {"layernorm_forward": {"wrong-axis"}, "layernorm_backward": None}),
    "wrong_axis_groupnorm": (
        [("xg = x.reshape(N, G, -1)", "xg = x.reshape(N, C, -1)", 1)],
        {"spatial_groupnorm_forward": {"wrong-axis"}, "spatial_groupnorm_backward": None}),
    "eps_outside_sqrt": (
        [("sqrtvar = np.sqrt(var + eps)", "sqrtvar = np.sqrt(var) + eps", 1)],
        {"batchnorm_forward": {"eps-outside-sqrt"}, "batchnorm_backward": FIX_FORWARD,
         "batchnorm_backward_alt": FIX_FORWARD, "spatial_batchnorm_forward": {"eps-outside-sqrt"},
         "spatial_batchnorm_backward": FIX_FORWARD}),
    "momentum_reversed": (
        [("momentum * running_mean + (1 - momentum) * mu", "(1 - momentum) * running_mean + momentum * mu", 1),
         ("momentum * running_var + (1 - momentum) * var", "(1 - momentum) * running_var + momentum * var", 1)],
        {"batchnorm_forward": {"momentum-reversed"}, "spatial_batchnorm_forward": {"momentum-reversed"}}),
    "no_running_update": (
        [('        bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * mu\n'
          '        bn_param["running_var"] = momentum * running_var + (1 - momentum) * var\n', "", 1)],
        {"batchnorm_forward": {"no-running-update"}, "spatial_batchnorm_forward": {"no-running-update"}}),
    "test_uses_batch_stats": (
        [("out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta",
          "out = gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + beta", 1)],
        {"batchnorm_forward": {"test-uses-batch-stats"}, "spatial_batchnorm_forward": {"test-uses-batch-stats"}}),
    "running_var_unbiased": (
        [("momentum * running_var + (1 - momentum) * var", "momentum * running_var + (1 - momentum) * var * N / (N - 1)",
          1)],
        {"batchnorm_forward": {"running-var-unbiased"}, "spatial_batchnorm_forward": {"running-var-unbiased"}}),
    "dgamma_not_summed": (
        [("dgamma = (dout * xhat).sum(axis=0)", "dgamma = dout * xhat", 1)],
        {"batchnorm_backward": {"dgamma-not-summed", "wrong-shape"}}),
    "dbeta_not_summed": (
        [("dbeta = dout.sum(axis=0)", "dbeta = dout", 1)],
        {"batchnorm_backward": {"dbeta-not-summed", "wrong-shape"}}),
    "inputs_modified": (
        [("        xmu = x - mu\n", "        x -= mu\n        xmu = x\n", 1)],
        {"batchnorm_forward": {"inputs-modified"}, "spatial_batchnorm_forward": None}),
    "two_bugs_in_one_backward": (
        [("return dx1 + dx2, dgamma, dbeta", "return dx1, dgamma, dout", 1)],
        {"batchnorm_backward": {"missing-mean-path", "dbeta-not-summed", "wrong-shape"}}),
    "momentum_and_test_mode": (
        [("momentum * running_mean + (1 - momentum) * mu", "(1 - momentum) * running_mean + momentum * mu", 1),
         ("momentum * running_var + (1 - momentum) * var", "(1 - momentum) * running_var + momentum * var", 1),
         ("out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta",
          "out = gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + beta", 1)],
        {"batchnorm_forward": {"momentum-reversed", "test-uses-batch-stats"},
         "spatial_batchnorm_forward": {"momentum-reversed", "test-uses-batch-stats"}}),
}

DGAMMA_USES_X = '''
import numpy as np

def layernorm_forward(x, gamma, beta, ln_param):
    mu, var = x.mean(1, keepdims=True), x.var(1, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + ln_param.get("eps", 1e-5))
    return gamma * xhat + beta, (x, xhat, gamma, var, ln_param.get("eps", 1e-5))

def layernorm_backward(dout, cache):
    x, xhat, gamma, var, eps = cache
    D = dout.shape[1]
    dxhat = dout * gamma
    dx = (D * dxhat - dxhat.sum(1, keepdims=True) - xhat * (dxhat * xhat).sum(1, keepdims=True)) / (D * np.sqrt(var + eps))
    return dx, (dout * x).sum(0), dout.sum(0)
'''


def _write_bug(tmp_path, name):
    edits, _ = BUGS[name]
    source = CORRECT
    for old, new, count in edits:
        assert source.count(old) == count, (name, old)
        source = source.replace(old, new)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return path


def _ids(report):
    return {f.name: set(d.id for d in f.diagnoses) for f in report.functions}


def test_correct_reference_has_no_diagnosis():
    report = diagnose.check_file(CORPUS / "correct_staged.py")
    assert {f.name for f in report.functions} == ALL
    assert all(f.status == "ok" and not f.diagnoses for f in report.functions), report.dumps()
    assert report.exit_code == 0


def test_normgrad_itself_passes_in_process():
    import normgrad.functional as F

    report = diagnose.check(F)
    assert {f.name for f in report.functions} == ALL
    assert report.ok, report.dumps()


@pytest.mark.parametrize("name", sorted(BUGS))
def test_each_bug_is_diagnosed_with_its_id(tmp_path, name):
    path = _write_bug(tmp_path, name)
    report = diagnose.check_file(path)
    _, expected = BUGS[name]
    ids = _ids(report)
    for function, want in expected.items():
        if want == FIX_FORWARD:
            assert report[function].ok and not ids[function], report[function].to_json()
            assert any("your backward is right for your forward" in n and "fix the forward" in n
                       for n in report[function].notes), report[function].notes
            continue
        assert not report[function].ok, function
        if want is not None:  # None: wrong as a consequence; the id is not asserted
            assert want <= ids[function], (function, ids[function])
    for function in ALL - set(expected):  # no false alarms on the functions left correct
        assert report[function].ok and not ids[function], (function, report[function].to_json())
    assert report.exit_code == 1


def test_dgamma_uses_x(tmp_path):
    path = tmp_path / "dgamma_x.py"
    path.write_text(DGAMMA_USES_X)
    report = diagnose.check_file(path)
    assert report["layernorm_forward"].ok
    assert _ids(report)["layernorm_backward"] == {"dgamma-uses-x"}


def test_unrecognised_backward_error_is_localized_to_a_path(tmp_path):
    path = _write_bug(tmp_path, "missing_mean_path")
    path.write_text(path.read_text().replace("return dx1, dgamma, dbeta", "return dx1 + 0.5 * dx2, dgamma, dbeta"))
    f = diagnose.check_file(path)["batchnorm_backward"]
    assert f.status == "wrong" and not f.diagnoses
    assert any("path through the mean is weighted 0.5" in n for n in f.notes), f.notes
    # an error that is not a re-weighting of the paths gets no weights (they would mislead)
    path.write_text(path.read_text().replace("return dx1 + 0.5 * dx2, dgamma, dbeta",
                                             "return dx1 + dx2 + 0.1 * dout ** 2, dgamma, dbeta"))
    f = diagnose.check_file(path)["batchnorm_backward"]
    assert f.status == "wrong" and not any("weighted" in n for n in f.notes), f.notes
    assert any("not a re-weighting of the three paths" in n for n in f.notes), f.notes


def test_in_process_api_takes_a_namespace():
    namespace = {}
    exec(compile(CORRECT.replace("return dx1 + dx2, dgamma, dbeta", "return dx1, dgamma, dbeta"), "nb", "exec"),
         namespace)
    report = diagnose.check(namespace)
    assert _ids(report)["batchnorm_backward"] == {"missing-mean-path"}
    assert report["batchnorm_backward_alt"].ok


BEHAVIOURS = {
    "hang": ("while True:\n        pass", "timeout"),
    "crash": ("import os; os._exit(3)", "crash"),
    "segfault": ("import ctypes; ctypes.string_at(0)", "crash"),
    "exit": ("import sys; sys.exit('bye')", "error"),
    "raises": ("return 1 / 0", "error"),
}


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_misbehaving_user_code_is_reported_within_the_time_limit(tmp_path, behaviour):
    body, status = BEHAVIOURS[behaviour]
    source = CORRECT.replace("def batchnorm_backward(dout, cache):\n",
                             f"def batchnorm_backward(dout, cache):\n    {body}\n", 1)
    path = tmp_path / "user.py"
    path.write_text(source)
    started = time.perf_counter()
    report = diagnose.check_file(path, timeout=3)
    assert time.perf_counter() - started < 60
    f = report["batchnorm_backward"]
    assert f.status == status, f.to_json()
    assert report["batchnorm_backward_alt"].ok and report["batchnorm_forward"].ok  # the others still checked
    if behaviour == "raises":
        assert f.exception["type"] == "ZeroDivisionError" and f.exception["line"] == 29
        assert f.exception["file"] == str(path.resolve())
    if behaviour == "exit":
        assert "sys.exit" in f.exception["message"]
    assert report.exit_code == 1


def test_a_flood_of_output_is_cut(tmp_path):
    source = CORRECT.replace("def layernorm_backward(dout, cache):\n",
                             "def layernorm_backward(dout, cache):\n    print('x' * 10**7)\n"
                             "    import os; os.write(1, b'y' * 10**6)\n", 1)
    path = tmp_path / "loud.py"
    path.write_text(source)
    f = diagnose.check_file(path, timeout=20)["layernorm_backward"]
    assert f.ok
    assert len(f.output) <= 4096 and any("printed" in n for n in f.notes)


@pytest.mark.parametrize("source,expected", [
    ("def batchnorm_forward(:\n", ("batchnorm_forward", "error", "SyntaxError")),
    ("import sys\nsys.exit(1)\n", ("load", "nothing-to-check", "SystemExit")),
    ("x = 1\n", ("load", "nothing-to-check", None)),
    ("while True:\n    pass\n", ("load", "load-failed", None)),
])
def test_files_with_nothing_checkable_exit_1(tmp_path, capsys, source, expected):
    path = tmp_path / "bad.py"
    path.write_text(source)
    assert main(["check", str(path), "--json", "--timeout", "3", "--load-timeout", "3"]) == 1
    report = json.loads(capsys.readouterr().out)
    where, kind, why = expected
    if where == "load":
        assert report["load_error"]["type"] == kind
        assert why is None or why in " ".join(report["notes"])
    else:
        f = report["functions"][where]
        assert f["status"] == kind and f["exception"]["type"] == why
        assert f["exception"]["file"] == str(path.resolve()) and f["exception"]["line"] == 1


def test_cli_json_and_text(tmp_path, capsys):
    path = _write_bug(tmp_path, "missing_mean_path")
    assert main(["check", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    bn = report["functions"]["batchnorm_backward"]
    assert bn["ok"] is False and bn["diagnoses"] == ["missing-mean-path"] and bn["errors"]["dx"] > 1e-3
    assert report["functions"]["batchnorm_forward"]["ok"] is True
    assert main(["check", str(path)]) == 1
    text = capsys.readouterr().out
    assert "missing-mean-path" in text and "fix:" in text
    assert main(["check", str(CORPUS / "correct_staged.py")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "9 ok"
    # piped output is not wrapped: every function's errors stay on its own line, with the notebook's figure
    assert lines[0].startswith("batchnorm_forward: ok   error out") and "test out" in lines[0]
    assert "   notebook rel_error out " in lines[0]


def test_readme_shows_a_real_check_of_the_example(capsys):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = Path(__file__).resolve().parents[2] / "examples" / "buggy" / "my_batchnorm.py"
    assert "normgrad check examples/buggy/my_batchnorm.py" in readme
    report = diagnose.check_file(example)
    ids = _ids(report)
    assert ids == {"batchnorm_forward": {"momentum-reversed"}, "batchnorm_backward": {"missing-mean-path"}}
    for id_ in ("momentum-reversed", "missing-mean-path"):
        assert f"    {id_}: {diagnose.CATALOG[id_][0]}" in readme
