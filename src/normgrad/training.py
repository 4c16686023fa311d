"""The Solver's helpers that are not the loop itself: checking its data, its update
rule, its settings and its output path, measuring accuracy, and showing its progress."""

from __future__ import annotations

from dataclasses import dataclass

import math
import os
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from . import optim
from .outputs import writable_parent

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


def _integer(name: str, value, low: int, optional: bool = False):
    if optional and value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < low:
        none = " or None" if optional else ""
        raise ValueError(f"{name} must be an integer >= {low}{none}, got {value!r}")
    return int(value)


def check_settings(batch_size, num_epochs, num_train_samples, num_val_samples, print_every, lr_decay, seed,
                   epoch_callback) -> dict:
    """The Solver's numeric settings as plain ints/floats, or a ValueError/TypeError naming the one at fault."""
    if isinstance(lr_decay, (bool, np.bool_)) or not isinstance(lr_decay, Real) \
            or not (0 <= float(lr_decay) < math.inf):
        raise ValueError(f"lr_decay must be a finite number >= 0, got {lr_decay!r}")
    if epoch_callback is not None and not callable(epoch_callback):
        raise TypeError(f"epoch_callback must be a function of the solver or None, got {type(epoch_callback).__name__}")
    return dict(batch_size=_integer("batch_size", batch_size, 1), num_epochs=_integer("num_epochs", num_epochs, 0),
                num_train_samples=_integer("num_train_samples", num_train_samples, 1, optional=True),
                num_val_samples=_integer("num_val_samples", num_val_samples, 1, optional=True),
                print_every=_integer("print_every", print_every, 1), lr_decay=float(lr_decay),
                seed=_integer("seed", seed, 0, optional=True))


def check_output_prefix(name) -> str | None:
    """``checkpoint_name`` as a string, once its files (``NAME_epoch_K.npz``, ``NAME_latest.npz``)
    are known to be writable: the nearest existing folder above them is a folder we may write
    in, and ``NAME_latest.npz`` is not a folder. Checked before training, so a run cannot
    fail at its first checkpoint; nothing is created here."""
    if name is None:
        return None
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"checkpoint_name must be a path prefix (str) or None, got {type(name).__name__}")
    name = os.fspath(name)
    if not name or name.endswith(os.sep):
        raise ValueError(f"checkpoint_name must be a path prefix such as 'runs/mlp', got {name!r}")
    latest = Path(f"{name}_latest.npz")
    if latest.is_dir():
        raise ValueError(f"checkpoint_name {name!r}: {latest} is a folder")
    writable_parent(latest, f"checkpoint_name {name!r}")
    return name


def accuracy(model, X, y, num_samples=None, batch_size=100) -> float:
    """Fraction of X that ``model.loss(X)`` classifies as y, in batches; on a fixed (seeded)
    subsample of ``num_samples`` if given, so repeated checks compare like with like."""
    X, y = np.asarray(X), np.asarray(y)
    if num_samples is not None and len(X) > num_samples:
        idx = np.random.default_rng(0).choice(len(X), num_samples, replace=False)
        X, y = X[idx], y[idx]
    preds = [np.argmax(model.loss(X[i:i + batch_size]), axis=1) for i in range(0, len(X), batch_size)]
    return float(np.mean(np.concatenate(preds) == y)) if len(X) else 0.0


def _has_ipywidgets() -> bool:
    import importlib.util

    return importlib.util.find_spec("ipywidgets") is not None


def live_bar_works(console) -> bool:
    """Whether rich can draw a live bar on ``console`` (None: rich's default console). In
    Jupyter rich needs ipywidgets for that; without it it would only warn."""
    if console is None:
        from rich.console import Console

        console = Console()
    return not console.is_jupyter or _has_ipywidgets()


@dataclass(frozen=True)
class ProgressSettings:
    """What a progress display shows and how: the run's label, epochs, how often to print
    an iteration, live bar or lines, and the rich console (None: the default one)."""

    label: str
    num_epochs: int
    print_every: int
    verbose: bool
    progress: bool
    console: object = None


class Progress:
    """A training run's progress: a live rich bar (``settings.progress``), printed lines
    (``settings.verbose``), or nothing. Used as a context manager around training;
    ``total`` iterations, ``done`` of them already (a resumed run).

    Where no live bar can be drawn (a Jupyter notebook without ipywidgets), ``progress``
    prints one plain line per epoch instead: label, epoch, loss, train and val accuracy."""

    def __init__(self, settings: "ProgressSettings", total: int, done: int = 0):
        self.settings, self.total, self.done, self.bar, self.task = settings, total, done, None, None
        self.lines, self.last_loss = False, float("nan")

    def __enter__(self) -> "Progress":
        s = self.settings
        if s.progress and not live_bar_works(s.console):
            self.lines = True
        elif s.progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

            self.bar = Bar(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=s.console)
            self.bar.start()
            self.task = self.bar.add_task(s.label, total=self.total, completed=self.done, info="")
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def step(self, t: int, loss: float) -> None:
        self.last_loss = loss
        if self.bar is not None:
            self.bar.update(self.task, advance=1, info=f"loss {loss:.3f}")
        elif self.settings.verbose and (t - 1) % self.settings.print_every == 0:  # iterations 1, 1 + every, ...
            print(f"(Iteration {t} / {self.total}) loss: {loss:f}")

    def epoch(self, epoch: int, train_acc: float, val_acc: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, info=f"epoch {epoch} train {train_acc:.3f} val {val_acc:.3f}")
        elif self.lines:
            print(f"{self.settings.label}: epoch {epoch} / {self.settings.num_epochs}, loss {self.last_loss:.3f}, "
                  f"train acc {train_acc:.3f}, val acc {val_acc:.3f}", flush=True)
        elif self.settings.verbose:
            print(f"(Epoch {epoch} / {self.settings.num_epochs}) train acc: {train_acc:f}; val_acc: {val_acc:f}")
