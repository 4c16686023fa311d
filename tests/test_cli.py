"""The command line, run in-process through main(argv) as README.md shows it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from normgrad.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_quick_trains_checks_and_writes_a_report(tmp_path, capsys):
    out_dir = tmp_path / "report"
    assert main(["demo", "--quick", "--out", str(out_dir), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    for text in ("no norm", "batch norm", "layer norm", "best val acc", "steps to", "Gradient checks"):
        assert text in out
    assert "FAIL" not in out
    page = (out_dir / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert {"curves.png", "activations.png", "batchnorm-graph.png"} <= set(images)
    for name in images:
        assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for name in ("curves.svg", "activations.svg"):
        assert (out_dir / name).read_text().lstrip().startswith("<?xml")
    results = json.loads((out_dir / "results.json").read_text())
    assert [r["label"] for r in results["runs"]] == ["no norm", "batch norm", "layer norm"]
    for run in results["runs"]:
        epochs = results["settings"]["epochs"]
        assert len(run["val_acc_history"]) == epochs and len(run["activation_hist"]) == epochs + 1
        assert len(run["loss_history"]) == epochs * run["iterations_per_epoch"]
        assert 0 <= run["test_acc"] <= 1
    assert all(row["ok"] for row in results["model_gradient_checks"])
    errors = results["float32_large_mean_errors"]
    assert errors["normgrad"] < 1e-3 < errors["naive E[x^2]-E[x]^2"]


@pytest.mark.parametrize("argv,message", [
    (["demo", "--epochs", "0"], "--epochs"),
    (["graph", "--out", "x.pdf"], ".svg or .png"),
])
def test_bad_options_exit_2_with_a_message(argv, message, capsys, tmp_path):
    assert main(argv + (["--out", str(tmp_path)] if argv[0] == "demo" else [])) == 2
    assert message in capsys.readouterr().err


def test_demo_out_that_is_a_file_fails_before_any_training(tmp_path, capsys, monkeypatch):
    """Issue 26: ``normgrad demo --out FILE`` is refused at once with a message (no
    traceback after all the training): nothing is trained, the file is left as it was."""
    from normgrad.demo import job

    trained = []
    monkeypatch.setattr(job, "train_all", lambda *a, **k: trained.append(a))
    afile = tmp_path / "report"
    afile.write_text("keep me")
    for out, message in ((afile, "is an existing file, not a folder"), (afile / "sub", "is a file, not a folder")):
        assert main(["demo", "--quick", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"normgrad demo: error: --out {out}") and message in err, err
    assert not trained and afile.read_text() == "keep me"


@pytest.mark.parametrize("argv,message", [
    (["bench", "--quick", "--json", "{tmp}"], "--json {tmp} is a folder"),
    (["graph", "--out", "{tmp}/report/graph.svg"], "is a file, not a folder"),
])
def test_other_output_paths_are_checked_first(argv, message, tmp_path, capsys):
    (tmp_path / "report").write_text("")
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err


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
    code = ("import sys, normgrad, normgrad.functional, normgrad.gradcheck, normgrad.nn.distributed, "
            "normgrad.data_parallel; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_torch_interop_without_torch_says_how_to_install_it():
    code = ("import sys; sys.modules['torch'] = None\n"  # as if PyTorch were not installed
            "try:\n    import normgrad.torch\nexcept ImportError as e:\n    print(e)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "normgrad.torch needs PyTorch: pip install 'normgrad[torch]'" in result.stdout, result.stderr


def test_readme_graph_picture_exists_and_is_a_png():
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme):
        data = (ROOT / target).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", target
