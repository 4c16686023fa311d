"""Update rules against torch.optim; Solver histories, seeding, checkpoints and resuming."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from normgrad import optim
from normgrad.classifiers import FullyConnectedNet
from normgrad.solver import Solver


def _torch_rules():
    torch = pytest.importorskip("torch")
    return torch, {
        "sgd": (lambda p: torch.optim.SGD(p, lr=0.1), {"learning_rate": 0.1}),
        "sgd_momentum": (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), {"learning_rate": 0.1}),
        "rmsprop": (lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8), {"learning_rate": 0.01}),
        "adam": (lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8), {"learning_rate": 0.01}),
    }


@pytest.mark.parametrize("rule", sorted(optim.RULES))
def test_update_rules_match_torch(rng, rule):
    torch, rules = _torch_rules()
    make_torch, config = rules[rule]
    w = rng.standard_normal((4, 5))
    tw = torch.tensor(w.copy(), requires_grad=True)
    opt = make_torch([tw])
    config = dict(config)
    for _ in range(7):
        dw = rng.standard_normal(w.shape)
        w, config = optim.RULES[rule](w, dw, config)
        tw.grad = torch.tensor(dw)
        opt.step()
    np.testing.assert_allclose(w, tw.detach().numpy(), rtol=1e-10, atol=1e-12)


def _data(rng, n=120, d=6, classes=3):
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 1)
    return {"X_train": X[:90], "y_train": y[:90], "X_val": X[90:], "y_val": y[90:]}


def _model():
    return FullyConnectedNet([10, 10], input_dim=6, num_classes=3, normalization="batchnorm",
                             dropout_keep_ratio=0.8, weight_scale=0.3, rng=4)


def _solver(model, data, **kw):
    return Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-2}, lr_decay=0.9,
                  batch_size=16, verbose=False, seed=9, **kw)


def test_solver_histories_and_best_params(rng):
    data = _data(rng)
    solver = _solver(_model(), data, num_epochs=3)
    solver.train()
    assert len(solver.loss_history) == 3 * (90 // 16)
    assert len(solver.val_acc_history) == len(solver.train_acc_history) == len(solver.epoch_times) == 3
    assert solver.best_val_acc == max(solver.val_acc_history)
    for k, v in solver.best_params.items():  # the model ends with the best parameters
        np.testing.assert_array_equal(solver.model.params[k], v)
    assert solver.check_accuracy(data["X_val"], data["y_val"]) == solver.best_val_acc


def test_same_seed_same_run(rng):
    data = _data(rng)
    a, b = _solver(_model(), data, num_epochs=2), _solver(_model(), data, num_epochs=2)
    a.train()
    b.train()
    assert a.loss_history == b.loss_history


def test_resume_reaches_the_uninterrupted_parameters(rng, tmp_path):
    data = _data(rng)
    full = _solver(_model(), data, num_epochs=4)
    full.train()
    first = _solver(_model(), data, num_epochs=2, checkpoint_name=str(tmp_path / "run"))
    first.train()
    resumed = Solver.resume(tmp_path / "run_epoch_2.npz", _model(), data, num_epochs=4, verbose=False)
    assert resumed.epoch == 2
    resumed.train()
    assert resumed.loss_history == full.loss_history
    assert resumed.val_acc_history == full.val_acc_history
    for k in full.model.params:
        np.testing.assert_array_equal(resumed.model.params[k], full.model.params[k])
    for ours, theirs in zip(resumed.model.bn_params, full.model.bn_params):
        np.testing.assert_array_equal(ours["running_mean"], theirs["running_mean"])
        np.testing.assert_array_equal(ours["running_var"], theirs["running_var"])


def test_checkpoint_holds_no_pickles(rng, tmp_path):
    data = _data(rng)
    solver = _solver(_model(), data, num_epochs=1)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "c.npz")
    with np.load(path, allow_pickle=False) as archive:  # raises if anything needs unpickling
        meta = json.loads(str(archive["__meta__"]))
    assert meta["progress"]["epoch"] == 1 and meta["settings"]["batch_size"] == 16


def test_resume_refuses_a_foreign_file(tmp_path, rng):
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    with pytest.raises(ValueError, match=r"other\.npz is not a normgrad checkpoint: it has no '__meta__' entry"):
        Solver.resume(tmp_path / "other.npz", _model(), _data(rng))


def test_resume_names_a_truncated_or_incomplete_checkpoint(tmp_path, rng):
    data = _data(rng)
    solver = _solver(_model(), data, num_epochs=1)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "c.npz")
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cut\.npz cannot be read as a normgrad checkpoint"):
        Solver.resume(cut, _model(), data)
    from normgrad import checkpoint

    tree = checkpoint.load(path)
    del tree["optim_configs"]
    checkpoint.save(tmp_path / "partial.npz", tree)
    with pytest.raises(ValueError, match=r"partial\.npz is an incomplete checkpoint: missing \['optim_configs'\]"):
        Solver.resume(tmp_path / "partial.npz", _model(), data)


def test_killed_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path):
    """A process writes a checkpoint, then is SIGKILLed half-way through writing the next."""
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        import numpy as np
        from normgrad.classifiers import FullyConnectedNet
        from normgrad.solver import Solver
        rng = np.random.default_rng(0)
        X = rng.standard_normal((40, 6)).astype(np.float32); y = rng.integers(3, size=40)
        data = dict(X_train=X, y_train=y, X_val=X, y_val=y)
        model = FullyConnectedNet([8], input_dim=6, num_classes=3, rng=0)
        solver = Solver(model, data, num_epochs=1, batch_size=10, verbose=False, seed=0)
        solver.train()
        path = Path({str(tmp_path / "ck.npz")!r})
        solver.save_checkpoint(path)
        np.save({str(tmp_path / "saved_W1.npy")!r}, model.params["W1"])
        real = Path.write_bytes
        def dying_write(self, data):
            with open(self, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        Path.write_bytes = dying_write
        model.params["W1"] += 1.0
        solver.save_checkpoint(path)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    model = FullyConnectedNet([8], input_dim=6, num_classes=3, rng=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6)).astype(np.float32)
    y = rng.integers(3, size=40)
    data = dict(X_train=X, y_train=y, X_val=X, y_val=y)
    solver = Solver.resume(tmp_path / "ck.npz", model, data, verbose=False)
    assert solver.epoch == 1
    # the first checkpoint is intact, to the bit; the half-written one never landed
    np.testing.assert_array_equal(model.params["W1"], np.load(tmp_path / "saved_W1.npy"))


def test_nan_data_refused_up_front(rng):
    data = _data(rng)
    data["X_val"][3, 2] = np.nan
    with pytest.raises(ValueError, match="X_val contains NaN"):
        _solver(_model(), data)


@pytest.mark.parametrize("kwargs,message", [
    (dict(update_rule="adagrad"), "update_rule"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_settings(rng, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Solver(_model(), _data(rng), **kwargs)


def test_divergence_is_reported(rng):
    data = _data(rng)
    solver = Solver(FullyConnectedNet([10], input_dim=6, num_classes=3, weight_scale=1.0, rng=0), data,
                    update_rule="sgd", optim_config={"learning_rate": 1e30}, num_epochs=2, batch_size=16,
                    verbose=False)
    with pytest.raises((FloatingPointError, ValueError), match="diverged"):
        solver.train()
