"""The demo's training: the MLP once per normalization, by the Solver, with the
per-layer activations recorded before training and after every epoch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..solver import Solver
from .settings import MODELS, Settings, build_model, solver_options

HIST_EDGES = np.linspace(-4.0, 4.0, 41)


@dataclass
class RunResult:
    label: str
    normalization: str | None
    loss_history: list[float]
    train_acc_history: list[float]
    val_acc_history: list[float]
    best_val_acc: float
    test_acc: float
    steps_to_target: int | None
    seconds_per_epoch: float
    iterations_per_epoch: int
    # per epoch (0 = before training), per hidden layer: histogram counts of the
    # pre-activations (after the norm, before the relu) on a fixed probe batch
    activation_hist: list[list[list[int]]] = field(default_factory=list)
    activation_std: list[list[float]] = field(default_factory=list)


def record_activations(model, probe: tuple[np.ndarray, np.ndarray], result: RunResult) -> None:
    """Append the histogram and std of each hidden layer's pre-activations on the probe batch.

    The pass runs in training mode (batch statistics, as the net sees its data while
    it learns) without dropout, and leaves the running statistics as they were.
    """
    saved, use_dropout = model.state(), model.use_dropout
    model.record_activations, model.use_dropout = True, False
    try:
        model.loss(*probe)
    finally:
        model.record_activations, model.use_dropout = False, use_dropout
        model.load_state(saved)
    acts = model.activations
    result.activation_hist.append([np.histogram(np.clip(a, -4, 4), HIST_EDGES)[0].tolist() for a in acts])
    result.activation_std.append([float(a.std()) for a in acts])


def steps_to(val_acc: list[float], target: float, per_epoch: int) -> int | None:
    """Iterations until the first epoch whose validation accuracy reached ``target``."""
    for epoch, acc in enumerate(val_acc, start=1):
        if acc >= target:
            return epoch * per_epoch
    return None


def train_all(settings: Settings, data, console) -> list[RunResult]:
    """Train the MLP once per normalization, same seeds; record curves and activations."""
    probe = data["X_val"][:500], data["y_val"][:500]
    results = []
    for label, norm in MODELS:
        model = build_model(settings, norm, data)
        result = RunResult(label, norm, [], [], [], 0.0, 0.0, None, 0.0, 0)
        record_activations(model, probe, result)
        solver = Solver(model, data, **solver_options(settings), progress=True, console=console, label=label,
                        epoch_callback=lambda s, r=result: record_activations(s.model, probe, r))
        solver.train()  # ends with the best (validation) parameters in the model
        test_pred = np.argmax(model.loss(data["X_test"]), axis=1)
        result.loss_history = solver.loss_history
        result.train_acc_history, result.val_acc_history = solver.train_acc_history, solver.val_acc_history
        result.best_val_acc = solver.best_val_acc
        result.test_acc = float(np.mean(test_pred == data["y_test"]))
        result.iterations_per_epoch = solver.iterations_per_epoch
        result.steps_to_target = steps_to(solver.val_acc_history, settings.target_accuracy,
                                          solver.iterations_per_epoch)
        result.seconds_per_epoch = float(np.mean(solver.epoch_times)) if solver.epoch_times else 0.0
        results.append(result)
    return results
