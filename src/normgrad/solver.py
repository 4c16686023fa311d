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
called after each epoch's accuracy check. ``Solver.resume(path, model, data)``
continues from one to exactly the parameters an uninterrupted run reaches.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import checkpoint, optim
from .core.validate import NonFiniteError
from .training import Progress, accuracy, check_data, update_rule_of

_REQUIRED = ("settings", "progress", "rng", "params", "model_state", "best", "optim_configs")


class Solver:
    def __init__(self, model, data, update_rule="sgd", optim_config=None, lr_decay=1.0, batch_size=100,
                 num_epochs=10, num_train_samples=1000, num_val_samples=None, checkpoint_name=None,
                 print_every=10, verbose=True, seed=None, progress=False, console=None, label="training",
                 epoch_callback=None, check_first_step=False, stop_on_divergence=True):
        self.model = model
        self.X_train, self.y_train, self.X_val, self.y_val = check_data(data)
        self.update_rule_name, self.update_rule = update_rule_of(update_rule)
        if batch_size < 1 or num_epochs < 0:
            raise ValueError(f"batch_size must be >= 1 and num_epochs >= 0, got {batch_size}, {num_epochs}")
        self.optim_config = dict(optim_config or {})
        self.lr_decay, self.batch_size, self.num_epochs = lr_decay, int(batch_size), int(num_epochs)
        self.num_train_samples, self.num_val_samples = num_train_samples, num_val_samples
        self.checkpoint_name, self.print_every, self.verbose = checkpoint_name, print_every, verbose
        self.progress, self.console, self.label, self.epoch_callback = progress, console, label, epoch_callback
        self.check_first_step, self.stop_on_divergence, self.seed = check_first_step, stop_on_divergence, seed
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
        # The data were checked finite up front, so a NaN or Inf met inside the model
        # means training diverged: say so, instead of a wall of overflow warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            try:
                loss, grads = self.model.loss(self.X_train[idx], self.y_train[idx])
            except NonFiniteError:
                loss, grads = float("nan"), None
        self.t += 1
        if not np.isfinite(loss) or grads is None:
            if self.stop_on_divergence:
                raise FloatingPointError(f"training diverged: the loss became {loss} at iteration {self.t}; "
                                         "lower the learning rate or the weight scale")
            self.loss_history.append(float("nan"))  # recorded; the parameters stay the last finite ones
            return
        self.loss_history.append(float(loss))
        updated = {}
        with np.errstate(over="ignore", invalid="ignore"):
            for name, w in self.model.params.items():
                next_w, self.optim_configs[name] = self.update_rule(w, grads[name], self.optim_configs[name])
                updated[name] = next_w.astype(w.dtype, copy=False)
        if self.stop_on_divergence or all(np.isfinite(w).all() for w in updated.values()):
            self.model.params.update(updated)

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
        with Progress(self, total) as bar:
            while self.epoch < self.num_epochs:
                started = time.perf_counter()
                order = (np.random if self.rng is None else self.rng).permutation(len(self.X_train))
                for i in range(self.iterations_per_epoch):
                    self._step(order[i * self.batch_size:(i + 1) * self.batch_size])
                    bar.step(self.t, self.loss_history[-1])
                    if self.check_first_step and self.t == 1:
                        bar.epoch(0, *self._end_of_epoch())
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
        """A Solver continuing from checkpoint ``path``; its settings come from the
        checkpoint unless given in ``kwargs`` (e.g. a larger num_epochs)."""
        saved = checkpoint.load(path, _REQUIRED)
        missing = sorted(set(model.params) - set(saved["params"]))
        if missing:
            raise ValueError(f"checkpoint {path} lacks parameters {missing} of this model")
        solver = cls(model, data, **{**saved["settings"], **kwargs})
        _restore(solver, saved)
        return solver


def _state(solver: Solver) -> dict:
    """What a checkpoint holds: settings, progress, random state, the model's and the optimizer's state."""
    s = solver
    return {
        "settings": dict(update_rule=s.update_rule_name, lr_decay=s.lr_decay, batch_size=s.batch_size,
                         num_epochs=s.num_epochs, seed=s.seed),
        "progress": dict(epoch=s.epoch, t=s.t, best_val_acc=s.best_val_acc, loss_history=s.loss_history,
                         train_acc_history=s.train_acc_history, val_acc_history=s.val_acc_history,
                         epoch_times=s.epoch_times),
        "rng": None if s.rng is None else s.rng.bit_generator.state, "params": s.model.params,
        "model_state": s._model_state(),
        "best": {"params": s.best_params, "state": s.best_state}, "optim_configs": s.optim_configs,
    }


def _restore(solver: Solver, saved: dict) -> None:
    """Put a loaded checkpoint's state (``_state``) into ``solver`` and its model."""
    model = solver.model
    model.params.update(saved["params"])
    if saved["model_state"] is not None and hasattr(model, "load_state"):
        model.load_state(saved["model_state"])
    solver.best_params, solver.best_state = saved["best"]["params"], saved["best"]["state"]
    solver.optim_configs = saved["optim_configs"]
    if saved["rng"] is not None and solver.rng is not None:
        solver.rng.bit_generator.state = saved["rng"]
    for key, value in saved["progress"].items():
        setattr(solver, key, value)
