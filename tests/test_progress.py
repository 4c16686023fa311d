"""Solver(progress=True) where rich cannot draw a live bar (Jupyter without ipywidgets):
one plain line per epoch instead of rich's warning and no progress at all."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from normgrad import training
from normgrad.classifiers import FullyConnectedNet
from normgrad.solver import Solver


def _solver(console, epochs=2):
    rng = np.random.default_rng(0)
    data = {"X_train": rng.normal(size=(40, 5)), "y_train": rng.integers(0, 3, 40),
            "X_val": rng.normal(size=(20, 5)), "y_val": rng.integers(0, 3, 20)}
    model = FullyConnectedNet([8], input_dim=5, num_classes=3, rng=0)
    return Solver(model, data, num_epochs=epochs, batch_size=10, progress=True, verbose=False, console=console,
                  label="tiny", seed=0)


def test_jupyter_without_ipywidgets_prints_a_line_per_epoch(monkeypatch, capsys):
    monkeypatch.setattr(training, "_has_ipywidgets", lambda: False)
    shown = io.StringIO()
    console = Console(file=shown, force_jupyter=True)
    assert not training.live_bar_works(console)
    solver = _solver(console, epochs=3)
    solver.train()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == ["tiny: epoch 1 / 3", "tiny: epoch 2 / 3", "tiny: epoch 3 / 3"]
    assert f"val acc {solver.val_acc_history[-1]:.3f}" in lines[-1]
    assert f"loss {solver.loss_history[-1]:.3f}" in lines[-1]
    assert "ipywidgets" not in shown.getvalue()


@pytest.mark.parametrize("jupyter, widgets, bar", [(False, False, True), (True, True, True), (True, False, False)])
def test_live_bar_only_where_rich_can_draw_it(monkeypatch, jupyter, widgets, bar):
    monkeypatch.setattr(training, "_has_ipywidgets", lambda: widgets)
    console = Console(file=io.StringIO(), force_jupyter=jupyter, force_terminal=not jupyter)
    assert training.live_bar_works(console) is bar


def test_terminal_keeps_the_live_bar(monkeypatch, capsys):
    shown = io.StringIO()
    _solver(Console(file=shown, force_terminal=True, width=120)).train()
    assert capsys.readouterr().out == ""
    assert "tiny" in shown.getvalue() and "epoch 2" in shown.getvalue()
