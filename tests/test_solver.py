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


# ---- resume keeps every setting, and refuses another model (issue 26)


class _Stop(Exception):
    pass


def _stop_after(epoch):
    def callback(solver):
        if solver.epoch > epoch:
            raise _Stop  # before that epoch's checkpoint: the run "crashes" after `epoch`
    return callback


def _settings_run(data, **kw):
    return Solver(_model(), data, update_rule="sgd_momentum", optim_config={"learning_rate": 5e-2, "momentum": 0.8},
                  lr_decay=0.7, batch_size=16, num_epochs=4, num_train_samples=40, num_val_samples=20,
                  verbose=False, seed=3, **kw)


def test_resume_restores_every_setting_and_keeps_checkpointing(rng, tmp_path):
    data = _data(rng)
    full = _settings_run(data)
    full.train()
    crashed = _settings_run(data, checkpoint_name=str(tmp_path / "run"), epoch_callback=_stop_after(2))
    with pytest.raises(_Stop):
        crashed.train()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_epoch_1.npz", "run_epoch_2.npz", "run_latest.npz"]
    resumed = Solver.resume(tmp_path / "run_latest.npz", _model(), data)  # nothing given again
    assert (resumed.checkpoint_name, resumed.num_train_samples, resumed.num_val_samples) == (str(tmp_path / "run"), 40, 20)
    assert (resumed.update_rule_name, resumed.lr_decay, resumed.batch_size, resumed.num_epochs, resumed.seed) == \
        ("sgd_momentum", 0.7, 16, 4, 3)
    assert resumed.optim_config == {"learning_rate": 5e-2, "momentum": 0.8} and resumed.changed_settings == {}
    resumed.train()
    assert resumed.val_acc_history == full.val_acc_history and resumed.train_acc_history == full.train_acc_history
    assert resumed.loss_history == full.loss_history
    for k in full.model.params:
        np.testing.assert_array_equal(resumed.model.params[k], full.model.params[k])
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"run_epoch_{k}.npz" for k in range(1, 5)] + ["run_latest.npz"]


def test_resume_says_which_settings_it_was_given(rng, tmp_path, capsys):
    data = _data(rng)
    _settings_run(data, checkpoint_name=str(tmp_path / "run")).train()
    capsys.readouterr()
    resumed = Solver.resume(tmp_path / "run_epoch_2.npz", _model(), data, num_epochs=6, checkpoint_name=None,
                            batch_size=16, verbose=True)
    assert resumed.changed_settings == {"num_epochs": (4, 6), "checkpoint_name": (str(tmp_path / "run"), None),
                                        "verbose": (False, True)}
    assert resumed.resumed_from == tmp_path / "run_epoch_2.npz" and resumed.checkpoint_name is None
    out = capsys.readouterr().out
    assert "Resuming" in out and "at epoch 2 / 6" in out and "num_epochs 4 -> 6" in out
    assert f"checkpoint_name {str(tmp_path / 'run')!r} -> None" in out


def test_resume_asks_again_for_an_update_rule_of_ones_own(rng, tmp_path):
    data = _data(rng)

    def halving(w, dw, config=None):
        return w - 0.5 * dw, config

    Solver(_model(), data, update_rule=halving, num_epochs=1, batch_size=16, verbose=False, seed=0,
           checkpoint_name=str(tmp_path / "run")).train()
    with pytest.raises(ValueError, match=r"update rule 'halving', a function of your own .* update_rule="):
        Solver.resume(tmp_path / "run_latest.npz", _model(), data)
    resumed = Solver.resume(tmp_path / "run_latest.npz", _model(), data, update_rule=halving)
    assert resumed.update_rule is halving and resumed.changed_settings == {}


def test_course_solver_resumes_on_numpys_global_generator(rng, tmp_path):
    """The course's Solver (no seed: NumPy's global generator, dropout from it too) resumes
    to the uninterrupted run: the checkpoint holds the global generator's state."""
    from normgrad.cs231n.solver import Solver as CourseSolver

    data = _data(rng)

    def model():
        return FullyConnectedNet([10], input_dim=6, num_classes=3, dropout_keep_ratio=0.7, rng=None)

    np.random.seed(0)
    full = CourseSolver(model(), data, update_rule="adam", num_epochs=3, batch_size=16, verbose=False)
    full.train()
    np.random.seed(0)
    first = CourseSolver(model(), data, update_rule="adam", num_epochs=3, batch_size=16, verbose=False,
                         checkpoint_name=str(tmp_path / "c"))
    first.num_epochs = 1
    first.train()
    np.random.seed(0)  # the draws since have moved it on; resume puts it back
    m = model()
    resumed = CourseSolver.resume(tmp_path / "c_latest.npz", m, data, num_epochs=3)
    assert type(resumed) is CourseSolver and resumed.check_first_step and not resumed.stop_on_divergence
    resumed.train()
    assert resumed.loss_history == full.loss_history and resumed.val_acc_history == full.val_acc_history


@pytest.mark.parametrize("make,message", [
    (lambda: FullyConnectedNet([128, 128, 128], input_dim=6, num_classes=3),
     r"hidden_dims \[256, 256, 256\] there, \[128, 128, 128\] here"),
    (lambda: FullyConnectedNet([256, 256, 256], input_dim=6, num_classes=3, normalization="layernorm"),
     r'normalization "batchnorm" there, "layernorm" here'),
    (lambda: FullyConnectedNet([256, 256, 256], input_dim=6, num_classes=3, normalization="batchnorm",
                               dtype=np.float64), r'dtype "float32" there, "float64" here'),
    (lambda: FullyConnectedNet([256, 256, 256], input_dim=6, num_classes=4, normalization="batchnorm"),
     r"num_classes 3 there, 4 here"),
])
def test_resume_refuses_another_model_and_changes_nothing(rng, tmp_path, make, message):
    data = _data(rng)
    net = FullyConnectedNet([256, 256, 256], input_dim=6, num_classes=3, normalization="batchnorm", rng=0)
    Solver(net, data, num_epochs=1, batch_size=30, verbose=False, seed=0,
           checkpoint_name=str(tmp_path / "run")).train()
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other = make()
    params = {k: v.copy() for k, v in other.params.items()}
    with pytest.raises(ValueError, match=rf"run_latest\.npz belongs to another model: {message}"):
        Solver.resume(tmp_path / "run_latest.npz", other, data)
    assert params.keys() == other.params.keys()
    for k in params:
        np.testing.assert_array_equal(other.params[k], params[k])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files


def test_resume_refuses_a_conv_net_of_other_groups(rng, tmp_path):
    from normgrad.classifiers import ConvNet

    X = rng.standard_normal((8, 1, 4, 4)).astype(np.float32)
    data = {"X_train": X, "y_train": np.arange(8) % 3, "X_val": X, "y_val": np.arange(8) % 3}
    net = ConvNet(input_dim=(1, 4, 4), num_filters=(4,), num_classes=3, normalization="groupnorm", G=2, rng=0)
    Solver(net, data, num_epochs=1, batch_size=8, verbose=False, seed=0).save_checkpoint(tmp_path / "c.npz")
    other = ConvNet(input_dim=(1, 4, 4), num_filters=(4,), num_classes=3, normalization="groupnorm", G=4, rng=0)
    with pytest.raises(ValueError, match=r"belongs to another model: G 2 there, 4 here"):
        Solver.resume(tmp_path / "c.npz", other, data)


def _as_format_2(solver, path, monkeypatch):
    """A checkpoint as normgrad wrote them before issue 26: no architecture, five settings."""
    from normgrad import checkpoint
    from normgrad.solver import _state

    tree = _state(solver)
    del tree["architecture"], tree["numpy_rng"]
    tree["settings"] = {k: tree["settings"][k] for k in ("update_rule", "lr_decay", "batch_size", "num_epochs", "seed")}
    monkeypatch.setattr(checkpoint, "FORMAT", "normgrad-checkpoint-2")
    checkpoint.save(path, tree)
    monkeypatch.undo()


def test_older_checkpoints_still_resume_and_name_what_they_lack(rng, tmp_path, monkeypatch):
    data = _data(rng)
    full = _solver(_model(), data, num_epochs=3, num_train_samples=40)
    full.train()
    first = _solver(_model(), data, num_epochs=3, num_train_samples=40)
    first.num_epochs = 1
    first.train()
    _as_format_2(first, tmp_path / "old.npz", monkeypatch)
    with pytest.warns(UserWarning, match=r"normgrad-checkpoint-2 checkpoint, which does not record "
                                          r"\['optim_config', 'num_val_samples', 'checkpoint_name'"):
        resumed = Solver.resume(tmp_path / "old.npz", _model(), data, num_epochs=3, num_train_samples=40)
    resumed.train()
    assert resumed.loss_history == full.loss_history and resumed.val_acc_history == full.val_acc_history
    wrong = FullyConnectedNet([10, 12], input_dim=6, num_classes=3, normalization="batchnorm")
    with pytest.warns(UserWarning), \
            pytest.raises(ValueError, match=r"belongs to another model: W2 has shape \(10, 10\) there, \(10, 12\) here"):
        Solver.resume(tmp_path / "old.npz", wrong, data)


def test_unknown_checkpoint_formats_are_refused_by_name(tmp_path, rng):
    np.savez(tmp_path / "future.npz", __meta__=np.array(json.dumps({"format": "normgrad-checkpoint-9"})))
    with pytest.raises(ValueError, match=r"format 'normgrad-checkpoint-9'; readable: normgrad-checkpoint-3, "
                                         r"normgrad-checkpoint-2"):
        Solver.resume(tmp_path / "future.npz", _model(), _data(rng))
