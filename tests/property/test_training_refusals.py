"""Validate, then mutate, for training: every update rule in ``normgrad.optim`` and the
Solver (making one, resuming one, a training step, a checkpoint save) either succeeds or
raises a ValueError/TypeError, and a refused call leaves the parameters, the optimizer's
configs, the model's state (running statistics, generators), the counters, NumPy's global
generator and the files on disk bitwise as they were.

Each test draws one refused input (a hyperparameter out of range or of the wrong type, a
state array of the wrong shape, mismatched w/dw, a bad Solver setting or output path, a
checkpoint of another model, a corrupted optimizer config met mid-step) among otherwise
valid ones. Budgets are fixed and derandomized (at most ``BUDGET`` examples per test, the
conftest profile), so the time and the cases are the same on every run; where the space of
cases is smaller than its budget (Solver settings: 53 cases; a step refused half-way: 36),
hypothesis runs every one of them.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normgrad import optim
from normgrad.classifiers import FullyConnectedNet
from normgrad.solver import Solver

BUDGET = {"rules": 300, "solver": 150, "resume": 60, "step": 60}


def fingerprint(obj):
    """A comparable, bitwise picture of ``obj``: arrays by dtype, shape and bytes; floats by
    their bits (so NaN equals NaN); containers recursively; other objects by identity."""
    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype.str, obj.shape, obj.tobytes())
    if isinstance(obj, float):
        return ("float", np.float64(obj).tobytes())
    if isinstance(obj, dict):
        return ("dict", tuple((k, fingerprint(v)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, tuple(fingerprint(v) for v in obj))
    if obj is None or isinstance(obj, (bool, int, str, np.generic)):
        return (type(obj).__name__, repr(obj))
    return ("object", id(obj))


def files_of(folder: Path):
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else "dir") for p in sorted(folder.rglob("*"))}


# ----------------------------------------------------------------------------- update rules

_BAD_RATE = [-1e-3, -math.inf, math.inf, math.nan, "1e-3", True, None, [1e-3]]
_BAD_FRACTION = [1.0, 1.5, -0.1, math.nan, math.inf, "0.9", False]
_BAD_VALUES = {
    "learning_rate": _BAD_RATE, "epsilon": [-1e-8, math.inf, math.nan, "1e-8"],
    "momentum": _BAD_FRACTION, "decay_rate": _BAD_FRACTION, "beta1": _BAD_FRACTION, "beta2": _BAD_FRACTION,
    "t": [-1, 1.5, True, "3"],
}


@st.composite
def refused_rule_call(draw):
    """(rule name, w, dw, config) with exactly one thing a rule must refuse."""
    name = draw(st.sampled_from(sorted(optim.RULES)))
    shape = draw(st.sampled_from([(3,), (2, 3), (1, 1), (4, 1, 2)]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    w, dw = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    config = {}
    for key in optim.HYPERPARAMETERS[name]:  # some valid hyperparameters given
        if draw(st.booleans()):
            config[key] = optim.HYPERPARAMETERS[name][key][0] * draw(st.sampled_from([0.5, 1.0]))
    for key in optim.STATE[name]:  # and some valid state, as after earlier steps
        if draw(st.booleans()):
            config[key] = rng.standard_normal(shape) ** 2
    if name == "adam" and draw(st.booleans()):
        config["t"] = draw(st.integers(0, 100))
    keys = [*optim.HYPERPARAMETERS[name], *(["t"] if name == "adam" else [])]
    fault = draw(st.sampled_from(["value", "state", "dw shape", "w dtype", "dw dtype", "config type"]
                                 if optim.STATE[name] else ["value", "dw shape", "w dtype", "dw dtype", "config type"]))
    if fault == "value":
        key = draw(st.sampled_from(keys))
        config[key] = draw(st.sampled_from(_BAD_VALUES[key]))
    elif fault == "state":
        key = draw(st.sampled_from(optim.STATE[name]))
        config[key] = draw(st.sampled_from([np.zeros(shape + (2,)), np.zeros((7,)), 0.0, [0.0] * 3,
                                            np.zeros(shape, complex), np.zeros(shape, bool)]))
    elif fault == "dw shape":
        dw = draw(st.sampled_from([dw[..., :1] if shape[-1] > 1 else np.zeros(shape + (2,), dtype),
                                   np.zeros((5,), dtype), dw.reshape(-1, 1) if dw.ndim == 1 else dw.ravel()]))
    elif fault == "w dtype":
        w = draw(st.sampled_from([w > 0, w.astype(complex), w.astype(object)]))
    elif fault == "dw dtype":
        dw = draw(st.sampled_from([dw > 0, dw.astype(complex), dw.astype(str)]))
    else:
        config = draw(st.sampled_from([[("learning_rate", 1e-3)], "adam", 1e-3]))
    return name, w, dw, config


@settings(max_examples=BUDGET["rules"])
@given(refused_rule_call())
def test_a_refused_update_changes_nothing(call):
    name, w, dw, config = call
    before = fingerprint((w, dw, config))
    with pytest.raises((ValueError, TypeError)) as err:
        optim.RULES[name](w, dw, config)
    assert name in str(err.value) or "config must be a dict" in str(err.value)
    assert fingerprint((w, dw, config)) == before


@settings(max_examples=BUDGET["rules"] // 3)
@given(st.sampled_from(sorted(optim.RULES)), st.integers(0, 2**16), st.integers(1, 4))
def test_accepted_updates_leave_their_inputs_and_replace_state(name, seed, steps):
    """The other side: valid calls succeed, never write into w or dw, and replace (never
    modify) the state arrays a caller may still hold."""
    rng = np.random.default_rng(seed)
    w, config = rng.standard_normal((3, 2)), {}
    for _ in range(steps):
        dw = rng.standard_normal(w.shape)
        held = fingerprint((w, dw, {k: v for k, v in config.items() if isinstance(v, np.ndarray)}))
        arrays = {k: v for k, v in config.items() if isinstance(v, np.ndarray)}
        next_w, config = optim.RULES[name](w, dw, config)
        assert fingerprint((w, dw, arrays)) == held and next_w.shape == w.shape and np.isfinite(next_w).all()
        w = next_w


# ----------------------------------------------------------------------------- the Solver


def _data(seed=0, n=48, d=5, classes=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 1)
    return {"X_train": X[:32], "y_train": y[:32], "X_val": X[32:], "y_val": y[32:]}


def _model(hidden=(6,), normalization="batchnorm"):
    return FullyConnectedNet(list(hidden), input_dim=5, num_classes=3, normalization=normalization,
                             dropout_keep_ratio=0.8, weight_scale=0.3, rng=1)


def _picture(model, solver=None):
    """Everything a refused call must leave alone: the model, the solver's counters and
    configs, and NumPy's global generator."""
    parts = [model.params, model.state(), model.dropout_param, list(np.random.get_state())]
    if solver is not None:
        parts += [solver.optim_configs, solver.t, solver.epoch, solver.loss_history, solver.val_acc_history,
                  solver.best_params, None if solver.rng is None else solver.rng.bit_generator.state]
    return fingerprint(parts)


_VALID = dict(update_rule="sgd_momentum", optim_config={"learning_rate": 0.05}, lr_decay=0.9, batch_size=8,
              num_epochs=2, num_train_samples=20, num_val_samples=10, print_every=5, seed=0, verbose=False)
_BAD_SETTINGS = {
    "batch_size": [0, -1, 1.5, True, "8", None],
    "num_epochs": [-1, 2.5, "2", None],
    "num_train_samples": [0, -5, 1.5, "20"],
    "num_val_samples": [0, -1, 2.0],
    "print_every": [0, -3, 0.5],
    "lr_decay": [-0.1, math.nan, math.inf, "0.9", None, False],
    "seed": [-1, 1.5, "zero", [1, 2]],
    "update_rule": ["adagrad", 3, None],
    "optim_config": [{"learning_rate": -1.0}, {"learning_rate": math.nan}, {"learning_rate": "0.1"},
                     {"momentum": 1.0}, {"momentum": -0.5}, [("learning_rate", 0.1)], "sgd"],
    "epoch_callback": [3, "print"],
    "checkpoint_name": ["", 3, "FILE/run", "FILE/sub/run", "DIR/run", "DIR/"],
}


@st.composite
def refused_settings(draw):
    """Solver keyword arguments with exactly one refused, and a data set perhaps spoiled instead."""
    kwargs = dict(_VALID)
    kind = draw(st.sampled_from([*sorted(_BAD_SETTINGS), "data"]))
    if kind == "data":
        return kwargs, draw(st.sampled_from(["nan X_val", "inf X_train", "missing y_val", "short y_train",
                                             "empty"]))
    kwargs[kind] = draw(st.sampled_from(_BAD_SETTINGS[kind]))
    return kwargs, None


def _spoil(data, how):
    data = {k: v.copy() for k, v in data.items()}
    if how == "nan X_val":
        data["X_val"][1, 2] = np.nan
    elif how == "inf X_train":
        data["X_train"][0, 0] = np.inf
    elif how == "missing y_val":
        del data["y_val"]
    elif how == "short y_train":
        data["y_train"] = data["y_train"][:-1]
    elif how == "empty":
        data["X_train"], data["y_train"] = data["X_train"][:0], data["y_train"][:0]
    return data


def _place(kwargs, folder: Path):
    """Point the checkpoint_name placeholders at a file or a folder inside ``folder``."""
    name = kwargs.get("checkpoint_name")
    if isinstance(name, str) and name[:4] in ("FILE", "DIR/"):
        (folder / "FILE").write_text("a file")
        (folder / "DIR" / "run_latest.npz").mkdir(parents=True, exist_ok=True)
        kwargs = dict(kwargs, checkpoint_name=f"{folder}/{name}")  # "DIR/" keeps its trailing slash
    return kwargs


@settings(max_examples=BUDGET["solver"])
@given(refused_settings())
def test_a_refused_solver_changes_nothing(case):
    kwargs, spoil = case
    data = _spoil(_data(), spoil) if spoil else _data()
    model = _model()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        kwargs = _place(kwargs, folder)
        before, files, data_before = _picture(model), files_of(folder), fingerprint(data)
        with pytest.raises((ValueError, TypeError)):
            Solver(model, data, **kwargs)
        assert _picture(model) == before and files_of(folder) == files and fingerprint(data) == data_before


@st.composite
def refused_resume(draw):
    """Either another model, or a refused setting given to resume."""
    if draw(st.booleans()):
        hidden, norm = draw(st.sampled_from([((7,), "batchnorm"), ((6,), "layernorm"), ((6,), None),
                                             ((6, 6), "batchnorm")]))
        return {}, (hidden, norm)
    key = draw(st.sampled_from(sorted(_BAD_SETTINGS)))
    return {key: draw(st.sampled_from(_BAD_SETTINGS[key]))}, None


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    Solver(_model(), _data(), checkpoint_name=str(folder / "run"), **_VALID).train()
    return folder


@settings(max_examples=BUDGET["resume"])
@given(refused_resume())
def test_a_refused_resume_changes_nothing(saved_run, case):
    kwargs, other = case
    model = _model(*other) if other else _model()
    with tempfile.TemporaryDirectory() as tmp:
        kwargs = _place(kwargs, Path(tmp))
        before, files = _picture(model), (files_of(saved_run), files_of(Path(tmp)))
        with pytest.raises((ValueError, TypeError)):
            Solver.resume(saved_run / "run_latest.npz", model, _data(), **kwargs)
        assert _picture(model) == before and (files_of(saved_run), files_of(Path(tmp))) == files


@settings(max_examples=BUDGET["step"])
@given(st.integers(0, 1), st.sampled_from(["W1", "b1", "gamma1", "beta1", "W2", "b2"]),
       st.sampled_from(["velocity", "momentum", "learning_rate"]))
def test_a_step_refused_half_way_changes_nothing(epochs, name, key):
    """An optimizer config that the rule refuses for one parameter (met after the others'
    updates were computed): the step raises, and no parameter, config, running statistic,
    generator or counter moved."""
    solver = Solver(_model(), _data(), **dict(_VALID, num_epochs=epochs + 1))
    for _ in range(epochs):  # after some training, with state in the configs
        solver._step(np.arange(8))
    bad = {"velocity": np.zeros(7), "momentum": 1.0, "learning_rate": -1.0}[key]
    solver.optim_configs[name][key] = bad
    before = _picture(solver.model, solver)
    with pytest.raises(ValueError, match=f"sgd_momentum: config\\['{key}'\\]"):
        solver._step(np.arange(3, 11))  # one iteration of train(), on the examples 3..10
    assert _picture(solver.model, solver) == before


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_a_refused_save_changes_nothing(where):
    solver = Solver(_model(), _data(), **_VALID)
    solver._step(np.arange(8))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "FILE").write_text("a file")
        (folder / "ck.npz").mkdir()
        path = folder / ("ck.npz" if where == "a folder" else "FILE/ck.npz")
        before, files = _picture(solver.model, solver), files_of(folder)
        with pytest.raises(OSError):
            solver.save_checkpoint(path)
        assert _picture(solver.model, solver) == before and files_of(folder) == files
