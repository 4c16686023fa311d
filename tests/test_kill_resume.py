"""Kill a training run at any moment, resume it, kill it again, resume again: nothing lost.

Each run below is a child process training a small net (batch norm, dropout, Adam with
a decaying learning rate) with ``checkpoint_name`` set, resuming from ``run_latest.npz``
when there is one, as a user's script would. The child SIGKILLs itself at a chosen moment,
so the kills land exactly there, on every machine:

1. uninterrupted, in a folder of its own: the reference;
2. killed in the middle of epoch 2 (after two of its iterations);
3. resumed from epoch 1's checkpoint, killed half-way through writing epoch 3's checkpoint
   (a real SIGKILL inside the save: the temporary file is left behind);
4. resumed from epoch 2's checkpoint, run to the end.

The interrupted run must end bit-identical to the uninterrupted one (parameters, running
statistics, optimizer state, histories), with the checkpoint of every epoch present and
equal to the reference's, and no temporary file left. Each child is given 60 s at most.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from normgrad import checkpoint

EPOCHS, ITERATIONS = 4, 8  # iterations per epoch: 160 examples, batches of 20

CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import numpy as np
    from normgrad import _io, checkpoint
    from normgrad.classifiers import FullyConnectedNet
    from normgrad.solver import Solver

    kill = sys.argv[1]  # "never", "iteration:T" or "save:K"; the run's folder is the working directory
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 12)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(np.int64) + (X[:, 3] > 0.5)
    data = {"X_train": X[:160], "y_train": y[:160], "X_val": X[160:], "y_val": y[160:]}
    model = FullyConnectedNet([48, 48], input_dim=12, num_classes=3, normalization="batchnorm",
                              dropout_keep_ratio=0.8, weight_scale=0.2, rng=0)

    what, _, at = kill.partition(":")
    if what == "iteration":  # SIGKILL just before iteration T (counted from the run's start)
        step = Solver._step
        def dying_step(self, idx):
            if self.t + 1 == int(at):
                os.kill(os.getpid(), signal.SIGKILL)
            step(self, idx)
        Solver._step = dying_step
    elif what == "save":  # SIGKILL half-way through writing this process's K-th checkpoint
        saves, real = [0], checkpoint.atomic_write
        def dying_atomic_write(path, write):
            saves[0] += 1
            if saves[0] < int(at):
                return real(path, write)
            def half(tmp):
                write(tmp)
                data = tmp.read_bytes()
                with open(tmp, "r+b") as f:
                    f.truncate(len(data) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            return real(path, half)
        checkpoint.atomic_write = dying_atomic_write

    latest = Path("run_latest.npz")
    if latest.exists():
        solver = Solver.resume(latest, model, data)
    else:
        solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 3e-3}, lr_decay=0.8,
                        batch_size=20, num_epochs=%d, num_train_samples=60, num_val_samples=30, seed=5,
                        verbose=False, checkpoint_name="run")
    solver.train()
""" % EPOCHS)


def _run(folder, kill="never"):
    proc = subprocess.run([sys.executable, "-c", CHILD, kill], cwd=folder, capture_output=True, timeout=60)
    return proc.returncode, proc.stderr.decode()


def _comparable(tree):
    """A checkpoint's tree without what legitimately differs between runs (wall-clock times)."""
    tree = dict(tree, progress={k: v for k, v in tree["progress"].items() if k != "epoch_times"})
    return tree


def _assert_same(a, b, where=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), where
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def test_killed_twice_and_resumed_twice_ends_as_if_never_killed(tmp_path):
    reference, run = tmp_path / "reference", tmp_path / "run"
    reference.mkdir()
    run.mkdir()
    assert _run(reference) == (0, "")

    code, err = _run(run, f"iteration:{ITERATIONS + 3}")  # in the middle of epoch 2
    assert code == -9, err
    assert sorted(p.name for p in run.iterdir()) == ["run_epoch_1.npz", "run_latest.npz"]

    code, err = _run(run, "save:3")  # from epoch 1: saves epoch_2, latest, then dies writing epoch_3
    assert code == -9, err
    names = sorted(p.name for p in run.iterdir())
    assert names[1:] == ["run_epoch_1.npz", "run_epoch_2.npz", "run_latest.npz"]
    assert names[0].startswith(".run_epoch_3.npz.")  # the half-written temporary file
    assert checkpoint.load(run / "run_latest.npz")["progress"]["epoch"] == 2  # intact

    assert _run(run) == (0, "")  # from epoch 2 to the end
    expected = ["run_epoch_%d.npz" % k for k in range(1, EPOCHS + 1)] + ["run_latest.npz"]
    assert sorted(p.name for p in run.iterdir()) == expected  # every epoch, and no leftover
    for name in expected:
        ours, theirs = checkpoint.load(run / name), checkpoint.load(reference / name)
        assert ours["progress"]["epoch"] == theirs["progress"]["epoch"]
        _assert_same(_comparable(ours), _comparable(theirs), name)
    final = checkpoint.load(run / "run_latest.npz")
    assert final["progress"]["epoch"] == EPOCHS and len(final["progress"]["loss_history"]) == EPOCHS * ITERATIONS
