"""Training loop, CS231n-compatible, with a live progress bar and resumable checkpoints.

    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                    lr_decay=0.95, batch_size=100, num_epochs=10, seed=0)
    solver.train()
    solver.best_params, solver.loss_history, solver.val_acc_history

``model`` needs ``params`` (name -> array) and ``loss(X, y=None)`` returning scores,
or (loss, grads) when y is given. A model that also has ``state()`` /
``load_state(state)`` (normgrad's classifiers: running statistics, random
generator) gets that state checkpointed and restored too. ``data`` has X_train,
y_train, X_val, y_val.

Each epoch visits the training set in a random order: drawn from a generator seeded
by ``seed``, or, with no seed, from NumPy's global generator (so ``np.random.seed``
reproduces a run, as in the course). ``check_first_step`` adds an accuracy check
after the first iteration (the course's histories then have ``num_epochs + 1``
entries); ``stop_on_divergence=False`` records a NaN loss and keeps the last finite
parameters instead of raising. With ``checkpoint_name`` set, a checkpoint is written atomically at the
end of every epoch (``{checkpoint_name}_epoch_{k}.npz``, plus ``{checkpoint_name}_latest.npz``,
in the format of ``normgrad.checkpoint``); ``epoch_callback(solver)``, if given, is
called after each epoch's accuracy check, ``iteration_callback(solver)`` after each
iteration; ``step(idx)`` is one iteration on the training examples ``idx``. ``Solver.resume(path, model, data)``
continues from one to exactly the parameters an uninterrupted run reaches, with every
setting the run was started with (checkpointing included); a checkpoint records the
model it belongs to and refuses any other.

Every setting is checked when the Solver is made (the checkpoint folder included), and a
training step is all or nothing: one that raises leaves the parameters, the optimizer's
configs, the model's state and the counters as they were.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np

from . import checkpoint, optim
from .core.validate import NonFiniteError
from .training import (Progress, ProgressSettings, accuracy, check_data, check_output_prefix, check_settings,
                       update_rule_of)

_REQUIRED = ("settings", "progress", "rng", "params", "model_state", "best", "optim_configs")
# What a checkpoint restores: every argument of Solver but those that are objects of the running
# process (progress, console, epoch_callback, iteration_callback), which resume takes again.
_SETTINGS = ("update_rule", "optim_config", "lr_decay", "batch_size", "num_epochs", "num_train_samples",
             "num_val_samples", "checkpoint_name", "print_every", "verbose", "seed", "label", "check_first_step",
             "stop_on_divergence")
_PROGRESS = ("epoch", "t", "best_val_acc", "loss_history", "train_acc_history", "val_acc_history", "epoch_times")


class Solver:
    """Trains a model on a data set: minibatches, an update rule, learning-rate decay,
    accuracy checks after each epoch, the best validation parameters kept, resumable
    checkpoints (CS231n's Solver, with normgrad's checks).

    Inputs:
    - model: an object with ``params`` (dict of arrays) and ``loss(X, y=None)``: scores of
      shape (N, num_classes) without y, else ``(loss, grads)`` with grads shaped like params
    - data: dict with X_train of shape (N_train, ...), y_train of shape (N_train,) (ints in
      [0, num_classes)), X_val (N_val, ...) and y_val (N_val,)
    - update_rule: a name in ``normgrad.optim.RULES`` ('sgd', 'sgd_momentum', 'rmsprop',
      'adam') or a function ``(w, dw, config) -> (next_w, config)``; optim_config: its settings
    - lr_decay, batch_size, num_epochs: the schedule; num_train_samples, num_val_samples:
      how many examples the accuracy checks use (None: all)
    - checkpoint_name: a path prefix; each epoch writes NAME_epoch_K.npz and NAME_latest.npz
    - seed: the batch order's generator (None: NumPy's global one, as the course)
    - verbose, print_every: printed lines; progress, console, label: a live progress bar
      (in Jupyter without ipywidgets, one line per epoch)
    - epoch_callback, iteration_callback: functions of the solver, called after each
      epoch / iteration
    - check_first_step: True adds an accuracy check after the first iteration;
      stop_on_divergence: False goes on with NaN losses instead of raising
      FloatingPointError (True and False are the course's habits)

    After ``train()``: ``loss_history`` (one per iteration), ``train_acc_history`` and
    ``val_acc_history`` (one per epoch), ``best_val_acc``; the model holds the best
    validation epoch's parameters.
    """

    def __init__(self, model, data, update_rule="sgd", optim_config=None, lr_decay=1.0, batch_size=100,
                 num_epochs=10, num_train_samples=1000, num_val_samples=None, checkpoint_name=None,
                 print_every=10, verbose=True, seed=None, progress=False, console=None, label="training",
                 epoch_callback=None, check_first_step=False, stop_on_divergence=True, iteration_callback=None):
        self.model = model
        self.X_train, self.y_train, self.X_val, self.y_val = check_data(data)
        self.update_rule_name, self.update_rule = update_rule_of(update_rule)
        optim.check_config(self.update_rule, optim_config)
        n = check_settings(batch_size, num_epochs, num_train_samples, num_val_samples, print_every, lr_decay, seed,
                           epoch_callback)
        checkpoint_name = check_output_prefix(checkpoint_name)  # before any work: a run cannot fail at its end
        self.optim_config = dict(optim_config or {})
        self.lr_decay, self.batch_size, self.num_epochs = n["lr_decay"], n["batch_size"], n["num_epochs"]
        self.num_train_samples, self.num_val_samples = n["num_train_samples"], n["num_val_samples"]
        self.checkpoint_name, self.print_every, self.verbose = checkpoint_name, n["print_every"], verbose
        self.progress, self.console, self.label, self.epoch_callback = progress, console, label, epoch_callback
        self.check_first_step, self.stop_on_divergence, self.seed = check_first_step, stop_on_divergence, n["seed"]
        self.resumed_from, self.changed_settings = None, {}  # set by resume
        self.iteration_callback = iteration_callback
        self._reset()

    def _reset(self):
        self.epoch = 0
        self.t = 0  # iterations done
        self.best_val_acc = 0.0
        self.best_params, self.best_state = {}, None
        self.loss_history, self.train_acc_history, self.val_acc_history = [], [], []
        self.epoch_times: list[float] = []
        self.rng = None if self.seed is None else np.random.default_rng(self.seed)  # None: np.random
        self.optim_configs = {p: dict(self.optim_config) for p in self.model.params}

    @property
    def iterations_per_epoch(self) -> int:
        return max(len(self.X_train) // self.batch_size, 1)

    def _model_state(self):
        return self.model.state() if hasattr(self.model, "state") else None

    def _step(self, idx):
        """One iteration, all or nothing: if it raises (a refused update, divergence with
        ``stop_on_divergence``, an interrupt), the parameters, the optimizer's configs, the
        model's state (running statistics, generator) and the counters are as before it."""
        before = self._model_state()
        try:
            loss, updated, configs = self._attempt(idx)
        except BaseException:
            if before is not None:
                self.model.load_state(before)
            raise
        self.t += 1
        self.loss_history.append(loss)
        if configs is not None:
            self.optim_configs.update(configs)
        if updated is not None:
            self.model.params.update(updated)

    def _attempt(self, idx):
        """(loss, new parameters, new optimizer configs) of one step, changing neither;
        None for what a diverged step (without ``stop_on_divergence``) keeps as it was."""
        # The data were checked finite up front, so a NaN or Inf met inside the model
        # means training diverged: say so, instead of a wall of overflow warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            try:
                loss, grads = self.model.loss(self.X_train[idx], self.y_train[idx])
            except NonFiniteError:
                loss, grads = float("nan"), None
            if not np.isfinite(loss) or grads is None:
                self._diverged(f"the loss became {loss}")
                return float("nan"), None, None  # recorded; the parameters stay the last finite ones
            updated, configs = {}, {}
            for name, w in self.model.params.items():
                # on a copy: the rule fills it in, and ours changes only once every parameter's update is made
                next_w, configs[name] = self.update_rule(w, grads[name], dict(self.optim_configs[name]))
                updated[name] = np.asarray(next_w).astype(w.dtype, copy=False)
        if not all(np.isfinite(w).all() for w in updated.values()):
            self._diverged("the parameters became NaN or Inf")
            updated = None
        return float(loss), updated, configs

    def _diverged(self, what: str) -> None:
        if self.stop_on_divergence:
            raise FloatingPointError(f"training diverged: {what} at iteration {self.t + 1}; "
                                     "lower the learning rate or the weight scale")

    def step(self, idx) -> float:
        """One iteration (forward, backward, update) on the training examples ``idx``; its loss."""
        self._step(idx)
        return self.loss_history[-1]

    def check_accuracy(self, X, y, num_samples=None, batch_size=100) -> float:
        """Fraction of X classified as y, on a seeded subsample of num_samples if given."""
        return accuracy(self.model, X, y, num_samples, batch_size)

    def _end_of_epoch(self):
        with np.errstate(over="ignore", invalid="ignore"):  # huge scores still have an argmax
            train_acc = self.check_accuracy(self.X_train, self.y_train, num_samples=self.num_train_samples)
            val_acc = self.check_accuracy(self.X_val, self.y_val, num_samples=self.num_val_samples)
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        if val_acc > self.best_val_acc or not self.best_params:
            self.best_val_acc = val_acc
            self.best_params = {k: v.copy() for k, v in self.model.params.items()}
            self.best_state = self._model_state()
        return train_acc, val_acc

    def train(self):
        """Run the remaining epochs (all of them, or those after a resumed checkpoint); the
        model ends with the parameters (and running statistics) of the best validation epoch."""
        total = self.num_epochs * self.iterations_per_epoch
        settings = ProgressSettings(self.label, self.num_epochs, self.print_every, self.verbose, self.progress,
                                    self.console)
        with Progress(settings, total, self.t) as bar:
            while self.epoch < self.num_epochs:
                started = time.perf_counter()
                order = (np.random if self.rng is None else self.rng).permutation(len(self.X_train))
                for i in range(self.iterations_per_epoch):
                    self._step(order[i * self.batch_size:(i + 1) * self.batch_size])
                    bar.step(self.t, self.loss_history[-1])
                    if self.check_first_step and self.t == 1:
                        bar.epoch(0, *self._end_of_epoch())
                    if self.iteration_callback is not None:
                        self.iteration_callback(self)
                self.epoch += 1
                for config in self.optim_configs.values():
                    config["learning_rate"] = config.get("learning_rate", 1e-2) * self.lr_decay
                self.epoch_times.append(time.perf_counter() - started)
                bar.epoch(self.epoch, *self._end_of_epoch())
                if self.epoch_callback is not None:
                    self.epoch_callback(self)
                if self.checkpoint_name:
                    self.save_checkpoint(f"{self.checkpoint_name}_epoch_{self.epoch}.npz")
                    self.save_checkpoint(f"{self.checkpoint_name}_latest.npz")
        if self.best_params:
            self.model.params = {k: v.copy() for k, v in self.best_params.items()}
            if self.best_state is not None:
                self.model.load_state(self.best_state)

    def save_checkpoint(self, path) -> Path:
        """Write everything needed to resume, atomically: the old file survives a failure."""
        return checkpoint.save(path, _state(self))

    @classmethod
    def resume(cls, path, model, data, **kwargs) -> "Solver":
        """A Solver continuing the run saved at ``path`` (a checkpoint this class wrote).

        ``model`` must be built as the run's was: same class, layer sizes, normalization
        and dtype (the checkpoint records them), or a ValueError names the difference.
        Every setting the run was started with comes back from the checkpoint (update rule
        and optim_config, lr_decay, batch_size, num_epochs, num_train_samples,
        num_val_samples, checkpoint_name, print_every, verbose, seed, ...), so the resumed
        run goes on checkpointing. A setting given in ``kwargs`` replaces the saved one
        (a larger num_epochs; checkpoint_name=None to stop checkpointing): the changes are
        in ``solver.changed_settings`` and printed when verbose. What a checkpoint cannot
        hold is given here again: ``progress``, ``console``, the callbacks, and an update
        rule that is a function of your own. A refused resume changes nothing.
        When the run drew from NumPy's global generator (no ``seed``), resume sets that
        generator to its state at the checkpoint.
        """
        path = Path(path)
        saved = checkpoint.load(path, _REQUIRED)
        settings, changed = _settings(saved, path, kwargs)
        _check_model(saved, model, path)
        solver = cls.__new__(cls)  # a subclass's __init__ takes its own arguments; these are Solver's
        Solver.__init__(solver, model, data, **settings)
        _restore(solver, saved)
        solver.resumed_from, solver.changed_settings = path, changed
        if solver.verbose:
            given = "; ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
            print(f"Resuming {path} at epoch {solver.epoch} / {solver.num_epochs}"
                  + (f"; changed from the checkpoint: {given}" if given else ""))
        return solver


def _architecture(model) -> dict:
    """What the model is (``model.architecture()``; for another model, its class and its
    parameters' shapes and dtypes), as JSON values, as a checkpoint records it."""
    if hasattr(model, "architecture"):
        arch = model.architecture()
    else:
        arch = {"class": type(model).__qualname__,
                "params": {k: [list(np.shape(w)), str(np.asarray(w).dtype)] for k, w in model.params.items()}}
    return json.loads(json.dumps(arch))


def _uses_numpy_global(solver: Solver) -> bool:
    """Whether the run draws from NumPy's global generator (the course's way): no seed, or
    dropout masks from a model without a generator of its own."""
    model = solver.model
    return solver.rng is None or (getattr(model, "use_dropout", False) and getattr(model, "rng", None) is None)


def _state(solver: Solver) -> dict:
    """What a checkpoint holds: the model it belongs to, settings, progress, random state,
    the model's and the optimizer's state."""
    s = solver
    builtin = optim.RULES.get(s.update_rule_name) is s.update_rule
    numpy_rng = list(np.random.get_state()) if _uses_numpy_global(s) else None
    return {
        "architecture": _architecture(s.model),
        "settings": dict(update_rule=s.update_rule_name if builtin else None, update_rule_name=s.update_rule_name,
                         optim_config=s.optim_config, lr_decay=s.lr_decay, batch_size=s.batch_size,
                         num_epochs=s.num_epochs, num_train_samples=s.num_train_samples,
                         num_val_samples=s.num_val_samples, checkpoint_name=s.checkpoint_name,
                         print_every=s.print_every, verbose=bool(s.verbose), seed=s.seed, label=str(s.label),
                         check_first_step=bool(s.check_first_step), stop_on_divergence=bool(s.stop_on_divergence)),
        "progress": dict(epoch=s.epoch, t=s.t, best_val_acc=s.best_val_acc, loss_history=s.loss_history,
                         train_acc_history=s.train_acc_history, val_acc_history=s.val_acc_history,
                         epoch_times=s.epoch_times),
        "rng": None if s.rng is None else s.rng.bit_generator.state, "numpy_rng": numpy_rng,
        "params": s.model.params, "model_state": s._model_state(),
        "best": {"params": s.best_params, "state": s.best_state}, "optim_configs": s.optim_configs,
    }


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except (ValueError, TypeError):  # arrays inside
        return False


def _settings(saved: dict, path: Path, kwargs: dict) -> tuple[dict, dict]:
    """(Solver's arguments: the checkpoint's settings, replaced by ``kwargs``; the settings
    ``kwargs`` changed, name -> (saved, given)). An update rule the checkpoint could not
    hold must be in ``kwargs``; an older checkpoint's unrecorded settings are warned about."""
    stored = dict(saved["settings"])
    rule_name = stored.pop("update_rule_name", stored.get("update_rule"))
    if saved.get("format") != checkpoint.FORMAT:
        unrecorded = [k for k in _SETTINGS if k not in stored and k not in kwargs]
        if unrecorded:
            warnings.warn(f"{path} is a {saved.get('format')} checkpoint, which does not record {unrecorded}: "
                          "they take Solver's defaults unless given to resume", UserWarning, stacklevel=3)
    if "update_rule" not in kwargs and stored.get("update_rule") not in optim.RULES:
        raise ValueError(f"{path} was trained with the update rule {rule_name!r}, a function of your own that a "
                         "checkpoint cannot hold: give it again, Solver.resume(..., update_rule=...)")
    changed = {}
    for key, given in kwargs.items():
        if key not in stored:
            continue
        old, new = stored[key], given
        if key == "update_rule":
            old, new = rule_name, update_rule_of(given)[0]
        elif key == "checkpoint_name" and given is not None:
            new = str(given)
        if not _same(old, new):
            changed[key] = (old, new)
    return {**stored, **kwargs}, changed


_ABSENT = object()


def _show(value) -> str:
    return "(not recorded)" if value is _ABSENT else json.dumps(value)


def _check_model(saved: dict, model, path: Path) -> None:
    """Raise a ValueError naming every way ``model`` differs from the one the checkpoint
    belongs to: its recorded architecture, else its parameters' names, shapes and dtypes
    (all an older checkpoint records)."""
    problems = []
    recorded = saved.get("architecture")
    if recorded is not None:
        current = _architecture(model)
        for key in dict.fromkeys([*recorded, *current]):
            there, here = recorded.get(key, _ABSENT), current.get(key, _ABSENT)
            if there != here:
                problems.append(f"{key} {_show(there)} there, {_show(here)} here")
    if not problems:
        params = saved["params"]
        missing, extra = sorted(set(model.params) - set(params)), sorted(set(params) - set(model.params))
        if missing:
            problems.append(f"it lacks parameters {missing} of this model")
        if extra:
            problems.append(f"it has parameters {extra} that this model lacks")
        for key in [k for k in model.params if k in params]:
            there, here = np.asarray(params[key]), np.asarray(model.params[key])
            if there.shape != here.shape:
                problems.append(f"{key} has shape {there.shape} there, {here.shape} here")
            elif there.dtype != here.dtype:
                problems.append(f"{key} is {there.dtype} there, {here.dtype} here")
    if problems:
        raise ValueError(f"checkpoint {path} belongs to another model: " + "; ".join(problems))


def _restore(solver: Solver, saved: dict) -> None:
    """Put a loaded checkpoint's state (``_state``) into ``solver`` and its model; if the
    model refuses its state, its parameters and state are put back as they were."""
    model = solver.model
    params, state = dict(model.params), solver._model_state()
    try:
        model.params.update({k: saved["params"][k] for k in model.params})
        if saved["model_state"] is not None and hasattr(model, "load_state"):
            model.load_state(saved["model_state"])
    except BaseException:
        model.params.clear()
        model.params.update(params)
        if state is not None:
            model.load_state(state)
        raise
    solver.best_params, solver.best_state = saved["best"]["params"], saved["best"]["state"]
    solver.optim_configs = saved["optim_configs"]
    if saved["rng"] is not None and solver.rng is not None:
        solver.rng.bit_generator.state = saved["rng"]
    for key in _PROGRESS:
        if key in saved["progress"]:
            setattr(solver, key, saved["progress"][key])
    if saved.get("numpy_rng") is not None:
        np.random.set_state(tuple(saved["numpy_rng"]))
