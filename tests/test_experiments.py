"""normgrad experiment: every study with --quick through main(argv); results, figures,
report and findings computed from the runs; --jobs 2 equals --jobs 1; a killed study resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import matplotlib.image
import pytest

from normgrad import studies
from normgrad.cli import main

RUN_KEYS = {"normalization", "seed", "best_val_acc", "best_train_acc", "final_train_loss", "loss_history",
            "train_acc_history", "val_acc_history"}
SWEPT = {"init-scale": "weight_scale", "batch-size": "batch_size", "conv-norms": "batch_size",
         "steps-to-accuracy": "learning_rate", "deep-net": "normalization"}


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiments")
    assert main(["experiment", "all", "--quick", "--out", str(out), "--jobs", "2"]) == 0
    return out


@pytest.mark.parametrize("name", studies.STUDIES)
def test_study_writes_results_figures_and_findings(quick_all, name):
    folder = quick_all / name
    results = json.loads((folder / "results.json").read_text())
    assert results["experiment"] == name and results["settings"]["quick"] is True
    assert len(results["runs"]) == len(results["settings"]["runs"]) >= 2
    for run in results["runs"]:
        assert RUN_KEYS <= set(run) and SWEPT[name] in run
        assert len(run["val_acc_history"]) == len(run["train_acc_history"]) == run["epochs"]
        assert 0 <= run["best_val_acc"] <= 1 and run["best_val_acc"] == max(run["val_acc_history"])
        assert len(run["loss_history"]) == run["iterations"] > 0
    # findings are computed from the runs: recomputing them gives the same sentences
    assert results["findings"] == studies.findings(name, results["runs"]) and results["findings"]
    png, svg = folder / f"{name}.png", folder / f"{name}.svg"
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()[:2000]
    report = (quick_all / "report.html").read_text()
    assert f"<h2 id='{name}'>" in report and f"{name}/{name}.png" in report


def test_findings_carry_the_runs_numbers(quick_all):
    results = json.loads((quick_all / "deep-net" / "results.json").read_text())
    none, bn = results["runs"]
    assert f"{bn['best_val_acc']:.3f}" in results["findings"][0] and f"{none['best_val_acc']:.3f}" in results["findings"][0]
    sizes = json.loads((quick_all / "batch-size" / "results.json").read_text())
    smallest = min(r["batch_size"] for r in sizes["runs"])
    bn_small = next(r for r in sizes["runs"] if r["normalization"] == "batchnorm" and r["batch_size"] == smallest)
    assert any(f"{bn_small['best_val_acc']:.3f} at batch {smallest}" in f for f in sizes["findings"])


def test_layernorm_check_compares_with_torch(quick_all):
    results = json.loads((quick_all / "layernorm-vs-torch" / "results.json").read_text())
    assert results["first_step_gradient_error"]["layernorm"] < 1e-5  # the same gradients as PyTorch's
    assert {(r["library"], r["normalization"]) for r in results["runs"]} == {
        (lib, n) for lib in ("normgrad", "torch") for n in ("none", "layernorm")}
    assert "layernorm-vs-torch" in (quick_all / "report.html").read_text()


def test_jobs_do_not_change_results(tmp_path, quick_all):
    assert main(["experiment", "deep-net", "--quick", "--out", str(tmp_path), "--jobs", "1"]) == 0
    one = json.loads((tmp_path / "deep-net" / "results.json").read_text())["runs"]
    two = json.loads((quick_all / "deep-net" / "results.json").read_text())["runs"]
    assert one == two


def test_killed_study_resumes(tmp_path):
    cmd = [sys.executable, "-m", "normgrad", "experiment", "batch-size", "--quick", "--out", str(tmp_path),
           "--jobs", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    runs = tmp_path / "batch-size" / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(runs.glob("*.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the study and its worker, half-way
    proc.wait(timeout=30)
    kept = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in runs.glob("*.json")}
    assert 2 <= len(kept) < 9 and not (tmp_path / "batch-size" / "results.json").exists()
    assert main(["experiment", "batch-size", "--quick", "--out", str(tmp_path), "--jobs", "1"]) == 0
    results = json.loads((tmp_path / "batch-size" / "results.json").read_text())
    assert len(results["runs"]) == 9
    for name, (mtime, text) in kept.items():  # what was saved was reused, not trained again
        assert (runs / name).stat().st_mtime_ns == mtime and (runs / name).read_text() == text


def test_out_that_is_a_file_fails_before_any_training(tmp_path, capsys, monkeypatch):
    """Issue 26: ``--out FILE`` is refused at once with a message, not a NotADirectoryError
    after the runs; nothing is trained and the file is left as it was."""
    from normgrad.solver import Solver
    from normgrad.studies import job, ln_check

    trained = []
    monkeypatch.setattr(Solver, "train", lambda self: trained.append(self))
    monkeypatch.setattr(job, "run_all", lambda *a, **k: trained.append(a))
    monkeypatch.setattr(ln_check, "check", lambda *a, **k: trained.append(a))
    afile = tmp_path / "results"
    afile.write_text("keep me")
    for out, message in ((afile, "is an existing file, not a folder"), (afile / "sub", "is a file, not a folder")):
        for name in ("deep-net", "all", "layernorm-vs-torch"):
            assert main(["experiment", name, "--quick", "--out", str(out)]) == 2
            err = capsys.readouterr().err
            assert err.startswith("normgrad experiment: error: --out ") and message in err, err
            assert "Traceback" not in err
    assert not trained and afile.read_text() == "keep me"


def test_bad_options(tmp_path, capsys):
    assert main(["experiment", "deep-net", "--quick", "--jobs", "0", "--out", str(tmp_path)]) == 2
    assert "--jobs" in capsys.readouterr().err
    assert main(["experiment", "conv-norms", "--quick", "--dataset", "cifar10", "--out", str(tmp_path)]) == 2
    assert "--data-root" in capsys.readouterr().err
