"""The Solver's helpers that are not the loop itself: checking its data and its
update rule, measuring accuracy, and showing its progress."""

from __future__ import annotations

import numpy as np

from . import optim

SPLITS = ("X_train", "y_train", "X_val", "y_val")


def check_data(data) -> tuple[np.ndarray, ...]:
    """(X_train, y_train, X_val, y_val) as arrays, or a ValueError naming what is wrong."""
    missing = [k for k in SPLITS if k not in data]
    if missing:
        raise ValueError(f"data is missing {missing}")
    X_train, y_train, X_val, y_val = (np.asarray(data[k]) for k in SPLITS)
    if len(X_train) != len(y_train) or len(X_val) != len(y_val):
        raise ValueError("data: X and y of each split must have the same length")
    if len(X_train) == 0:
        raise ValueError("data: X_train is empty")
    for name, X in (("X_train", X_train), ("X_val", X_val)):
        if np.issubdtype(X.dtype, np.floating) and not np.isfinite(X).all():
            raise ValueError(f"data: {name} contains NaN or Inf")
    return X_train, y_train, X_val, y_val


def update_rule_of(rule) -> tuple[str, object]:
    """(name, function) of an update rule given by name (one of ``optim.RULES``) or as a function."""
    if isinstance(rule, str):
        if rule not in optim.RULES:
            raise ValueError(f"update_rule must be one of {sorted(optim.RULES)}, got {rule!r}")
        return rule, optim.RULES[rule]
    if not callable(rule):
        raise ValueError(f"update_rule must be a name or a function, got {rule!r}")
    return getattr(rule, "__name__", "custom"), rule


def accuracy(model, X, y, num_samples=None, batch_size=100) -> float:
    """Fraction of X that ``model.loss(X)`` classifies as y, in batches; on a fixed (seeded)
    subsample of ``num_samples`` if given, so repeated checks compare like with like."""
    X, y = np.asarray(X), np.asarray(y)
    if num_samples is not None and len(X) > num_samples:
        idx = np.random.default_rng(0).choice(len(X), num_samples, replace=False)
        X, y = X[idx], y[idx]
    preds = [np.argmax(model.loss(X[i:i + batch_size]), axis=1) for i in range(0, len(X), batch_size)]
    return float(np.mean(np.concatenate(preds) == y)) if len(X) else 0.0


class Progress:
    """A Solver's progress: a live rich bar (``solver.progress``), printed lines
    (``solver.verbose``), or nothing. Used as a context manager around training."""

    def __init__(self, solver, total: int):
        self.solver, self.total, self.bar, self.task = solver, total, None, None

    def __enter__(self) -> "Progress":
        s = self.solver
        if s.progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

            self.bar = Bar(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=s.console)
            self.bar.start()
            self.task = self.bar.add_task(s.label, total=self.total, completed=s.t, info="")
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def step(self, t: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, info=f"loss {loss:.3f}")
        elif self.solver.verbose and (t - 1) % self.solver.print_every == 0:  # iterations 1, 1 + every, ...
            print(f"(Iteration {t} / {self.total}) loss: {loss:f}")

    def epoch(self, epoch: int, train_acc: float, val_acc: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, info=f"epoch {epoch} train {train_acc:.3f} val {val_acc:.3f}")
        elif self.solver.verbose:
            print(f"(Epoch {epoch} / {self.solver.num_epochs}) train acc: {train_acc:f}; val_acc: {val_acc:f}")
