"""Training loop, CS231n-compatible, with a live progress bar and resumable checkpoints.

    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                    lr_decay=0.95, batch_size=100, num_epochs=10, seed=0)
    solver.train()
    solver.best_params, solver.loss_history, solver.val_acc_history

``model`` needs ``params`` (name -> array) and ``loss(X, y=None)`` returning scores,
or (loss, grads) when y is given. ``data`` has X_train, y_train, X_val, y_val.

Each epoch visits the training set in an order drawn from a generator seeded by
``seed``. With ``checkpoint_name`` set, a checkpoint is written atomically at the
end of every epoch (``{checkpoint_name}_epoch_{k}.npz``, plus ``{checkpoint_name}_latest.npz``);
``epoch_callback(solver)``, if given, is called after each epoch's accuracy check
(the demo records activations there). ``Solver.resume(path, model, data)`` continues from one to exactly the parameters
an uninterrupted run reaches. Checkpoints are NumPy archives plus JSON, read with
``allow_pickle=False``: loading one never runs code.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np

from . import optim
from ._io import atomic_write

_FORMAT = "normgrad-checkpoint-1"


class Solver:
    def __init__(self, model, data, update_rule="sgd", optim_config=None, lr_decay=1.0, batch_size=100,
                 num_epochs=10, num_train_samples=1000, num_val_samples=None, checkpoint_name=None,
                 print_every=10, verbose=True, seed=None, progress=False, console=None, label="training",
                 epoch_callback=None):
        self.model = model
        data = {k: np.asarray(data[k]) for k in ("X_train", "y_train", "X_val", "y_val")}
        self.X_train, self.y_train, self.X_val, self.y_val = (data[k] for k in ("X_train", "y_train", "X_val", "y_val"))
        if len(self.X_train) != len(self.y_train) or len(self.X_val) != len(self.y_val):
            raise ValueError("data: X and y of each split must have the same length")
        if len(self.X_train) == 0:
            raise ValueError("data: X_train is empty")
        for name in ("X_train", "X_val"):
            if np.issubdtype(data[name].dtype, np.floating) and not np.isfinite(data[name]).all():
                raise ValueError(f"data: {name} contains NaN or Inf")
        if isinstance(update_rule, str):
            if update_rule not in optim.RULES:
                raise ValueError(f"update_rule must be one of {sorted(optim.RULES)}, got {update_rule!r}")
            self.update_rule_name, self.update_rule = update_rule, optim.RULES[update_rule]
        else:
            self.update_rule_name, self.update_rule = getattr(update_rule, "__name__", "custom"), update_rule
        if batch_size < 1 or num_epochs < 0:
            raise ValueError(f"batch_size must be >= 1 and num_epochs >= 0, got {batch_size}, {num_epochs}")
        self.optim_config = dict(optim_config or {})
        self.lr_decay, self.batch_size, self.num_epochs = lr_decay, int(batch_size), int(num_epochs)
        self.num_train_samples, self.num_val_samples = num_train_samples, num_val_samples
        self.checkpoint_name, self.print_every, self.verbose = checkpoint_name, print_every, verbose
        self.progress, self.console, self.label = progress, console, label
        self.epoch_callback = epoch_callback
        self.seed = seed
        self._reset()

    def _reset(self):
        self.epoch = 0
        self.t = 0  # iterations done
        self.best_val_acc = 0.0
        self.best_params = {}
        self.loss_history: list[float] = []
        self.train_acc_history: list[float] = []
        self.val_acc_history: list[float] = []
        self.epoch_times: list[float] = []
        self.rng = np.random.default_rng(self.seed)
        self.optim_configs = {p: dict(self.optim_config) for p in self.model.params}

    @property
    def iterations_per_epoch(self) -> int:
        return max(len(self.X_train) // self.batch_size, 1)

    # ------------------------------------------------------------------ training
    def _step(self, idx):
        # The data were checked finite up front, so a NaN or Inf met inside the model
        # means training diverged: say so, instead of a wall of overflow warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            try:
                loss, grads = self.model.loss(self.X_train[idx], self.y_train[idx])
            except ValueError as err:
                if "non-finite" not in str(err):
                    raise
                loss = float("nan")
        if not np.isfinite(loss):
            raise FloatingPointError(f"training diverged: the loss became {loss} at iteration {self.t}; "
                                     "lower the learning rate or the weight scale")
        self.loss_history.append(float(loss))
        for name, w in self.model.params.items():
            next_w, self.optim_configs[name] = self.update_rule(w, grads[name], self.optim_configs[name])
            self.model.params[name] = next_w.astype(w.dtype, copy=False)
        self.t += 1

    def check_accuracy(self, X, y, num_samples=None, batch_size=100) -> float:
        """Fraction of X classified as y, on a seeded subsample of num_samples if given."""
        X, y = np.asarray(X), np.asarray(y)
        if num_samples is not None and len(X) > num_samples:
            idx = np.random.default_rng(0).choice(len(X), num_samples, replace=False)
            X, y = X[idx], y[idx]
        preds = [np.argmax(self.model.loss(X[i:i + batch_size]), axis=1) for i in range(0, len(X), batch_size)]
        return float(np.mean(np.concatenate(preds) == y)) if len(X) else 0.0

    def _end_of_epoch(self):
        train_acc = self.check_accuracy(self.X_train, self.y_train, num_samples=self.num_train_samples)
        val_acc = self.check_accuracy(self.X_val, self.y_val, num_samples=self.num_val_samples)
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        if val_acc > self.best_val_acc or not self.best_params:
            self.best_val_acc = val_acc
            self.best_params = {k: v.copy() for k, v in self.model.params.items()}
        return train_acc, val_acc

    def train(self):
        """Run the remaining epochs (all of them, or those after a resumed checkpoint)."""
        bar = self._progress_bar()
        task = None
        if bar is not None:
            bar.start()
            task = bar.add_task(self.label, total=self.num_epochs * self.iterations_per_epoch,
                                completed=self.epoch * self.iterations_per_epoch, info="")
        try:
            while self.epoch < self.num_epochs:
                started = time.perf_counter()
                order = self.rng.permutation(len(self.X_train))
                for i in range(self.iterations_per_epoch):
                    self._step(order[i * self.batch_size:(i + 1) * self.batch_size])
                    if bar is not None:
                        bar.update(task, advance=1, info=f"loss {self.loss_history[-1]:.3f}")
                    elif self.verbose and self.t % self.print_every == 0:
                        print(f"(Iteration {self.t} / {self.num_epochs * self.iterations_per_epoch}) "
                              f"loss: {self.loss_history[-1]:f}")
                self.epoch += 1
                for config in self.optim_configs.values():
                    config["learning_rate"] = config.get("learning_rate", 1e-2) * self.lr_decay
                self.epoch_times.append(time.perf_counter() - started)
                train_acc, val_acc = self._end_of_epoch()
                if bar is not None:
                    bar.update(task, info=f"epoch {self.epoch} train {train_acc:.3f} val {val_acc:.3f}")
                elif self.verbose:
                    print(f"(Epoch {self.epoch} / {self.num_epochs}) train acc: {train_acc:f}; val_acc: {val_acc:f}")
                if self.epoch_callback is not None:
                    self.epoch_callback(self)
                if self.checkpoint_name:
                    self.save_checkpoint(f"{self.checkpoint_name}_epoch_{self.epoch}.npz")
                    self.save_checkpoint(f"{self.checkpoint_name}_latest.npz")
        finally:
            if bar is not None:
                bar.stop()
        if self.best_params:
            self.model.params = {k: v.copy() for k, v in self.best_params.items()}

    def _progress_bar(self):
        if not self.progress:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        return Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=self.console)

    # ------------------------------------------------------------------ checkpoints
    def _state(self):
        arrays, meta = {}, {"format": _FORMAT}
        for k, v in self.model.params.items():
            arrays[f"params/{k}"] = v
        for k, v in self.best_params.items():
            arrays[f"best/{k}"] = v
        configs = {}
        for name, config in self.optim_configs.items():
            configs[name] = {}
            for key, value in config.items():
                if isinstance(value, np.ndarray):
                    arrays[f"optim/{name}/{key}"] = value
                else:
                    configs[name][key] = value
        bn = []
        for i, param in enumerate(getattr(self.model, "bn_params", [])):
            bn.append({k: v for k, v in param.items() if not isinstance(v, np.ndarray)})
            for k, v in param.items():
                if isinstance(v, np.ndarray):
                    arrays[f"bn/{i}/{k}"] = v
        model_rng = getattr(self.model, "rng", None)
        meta.update(
            epoch=self.epoch, t=self.t, best_val_acc=self.best_val_acc, loss_history=self.loss_history,
            train_acc_history=self.train_acc_history, val_acc_history=self.val_acc_history,
            epoch_times=self.epoch_times, rng=self.rng.bit_generator.state, optim_configs=configs, bn_params=bn,
            model_rng=None if model_rng is None else model_rng.bit_generator.state,
            settings=dict(update_rule=self.update_rule_name, lr_decay=self.lr_decay, batch_size=self.batch_size,
                          num_epochs=self.num_epochs, seed=self.seed),
        )
        return arrays, meta

    def save_checkpoint(self, path) -> Path:
        """Write everything needed to resume, atomically: the old file survives a failure."""
        arrays, meta = self._state()
        buffer = io.BytesIO()
        np.savez(buffer, __meta__=np.array(json.dumps(meta)), **arrays)
        return atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))

    @classmethod
    def resume(cls, path, model, data, **kwargs) -> "Solver":
        """A Solver continuing from checkpoint ``path``; its settings come from the
        checkpoint unless given in ``kwargs`` (e.g. a larger num_epochs)."""
        with np.load(path, allow_pickle=False) as archive:
            files = {k: archive[k] for k in archive.files}
        meta = json.loads(str(files.pop("__meta__")))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a normgrad checkpoint")
        settings = {**meta["settings"], **kwargs}
        solver = cls(model, data, **settings)
        missing = set(model.params) - {k.split("/", 1)[1] for k in files if k.startswith("params/")}
        if missing:
            raise ValueError(f"checkpoint {path} lacks parameters {sorted(missing)} of this model")
        for key, value in files.items():
            kind, _, rest = key.partition("/")
            if kind == "params":
                model.params[rest] = value
            elif kind == "best":
                solver.best_params[rest] = value
        solver.optim_configs = {name: dict(config) for name, config in meta["optim_configs"].items()}
        for key, value in files.items():
            if key.startswith("optim/"):
                _, name, field = key.split("/", 2)
                solver.optim_configs[name][field] = value
        for i, param in enumerate(meta["bn_params"]):
            model.bn_params[i] = dict(param)
        for key, value in files.items():
            if key.startswith("bn/"):
                _, i, field = key.split("/", 2)
                model.bn_params[int(i)][field] = value
        if meta["model_rng"] is not None:
            model.rng.bit_generator.state = meta["model_rng"]
        solver.rng.bit_generator.state = meta["rng"]
        solver.epoch, solver.t, solver.best_val_acc = meta["epoch"], meta["t"], meta["best_val_acc"]
        solver.loss_history, solver.epoch_times = meta["loss_history"], meta["epoch_times"]
        solver.train_acc_history, solver.val_acc_history = meta["train_acc_history"], meta["val_acc_history"]
        return solver
