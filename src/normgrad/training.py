"""The Solver's helpers that are not the loop itself: checking its data and its
update rule, and showing its progress."""

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
        elif self.solver.verbose and t % self.solver.print_every == 0:
            print(f"(Iteration {t} / {self.total}) loss: {loss:f}")

    def epoch(self, epoch: int, train_acc: float, val_acc: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, info=f"epoch {epoch} train {train_acc:.3f} val {val_acc:.3f}")
        elif self.solver.verbose:
            print(f"(Epoch {epoch} / {self.solver.num_epochs}) train acc: {train_acc:f}; val_acc: {val_acc:f}")
