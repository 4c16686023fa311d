"""``normgrad demo``: what batch norm does to training, shown end to end.

Trains the same deep MLP (8 layers, small initial weights) three times — without
normalization, with batch norm, with layer norm — on the same data with the same
seeds, with live progress; prints a table (best validation accuracy, test
accuracy, steps to a target accuracy, time per epoch); checks the gradients of
every layer numerically; renders the batch-norm graph; and writes a report
directory: ``report.html``, ``results.json`` and PNG/SVG plots of the learning
curves and of the per-layer activation distributions over training.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from .. import kernels
from ..outputs import check_output_dir
from . import gradchecks, graph_walk
from .plots import plot_curves, plot_activations
from .report import HEADERS, figure_captions, smoke_note, table_rows, why, write_report
from .settings import Settings, load_data
from .training import train_all


def settings_for(dataset: str, epochs: int | None, quick: bool, seed: int) -> Settings:
    """The demo's settings (``--quick``'s small ones), with ``--epochs`` if given."""
    settings = Settings.quick(dataset, seed) if quick else Settings(dataset=dataset, seed=seed)
    if epochs is not None:
        if epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {epochs}")
        settings.epochs = epochs
    return settings


def _print_checks(console, layer_checks, model_checks) -> bool:
    """The gradient-check table; True if every check passed."""
    from rich.table import Table

    checks = Table(title="Gradient checks (float64, random dout, gamma, beta)")
    for col in ("what", "parameter", "max rel. error", ""):
        checks.add_column(col)
    ok = True
    for r in layer_checks:
        passed = max(r.dx, r.dgamma, r.dbeta) < 1e-7
        ok &= passed
        checks.add_row(f"{r.layer} ({r.backward})", "dx, dgamma, dbeta", f"{max(r.dx, r.dgamma, r.dbeta):.1e}",
                       "[green]ok[/]" if passed else "[red]FAIL[/]")
    for r in model_checks:
        ok &= r["ok"]
        checks.add_row(f"MLP {r['model']}, reg {r['reg']:g}", r["param"], f"{r['error']:.1e}",
                       "[green]ok[/]" if r["ok"] else "[red]FAIL[/]")
    console.print(checks)
    return ok


def _print_results(console, settings: Settings, results) -> None:
    from rich.table import Table

    table = Table(title=f"Same net, same seed, {settings.epochs} epochs")
    for h in HEADERS:
        table.add_column(h.format(target=settings.target_accuracy), justify="left" if h == "model" else "right")
    for row in table_rows(results, settings.smoke):
        table.add_row(*row)
    console.print(table)
    if settings.smoke:
        console.print(smoke_note(settings), markup=False)
    else:
        for line in why(settings, results):
            console.print(line, markup=False)


def run(console, dataset: str = "mnist1d", epochs: int | None = None, out: Path = Path("normgrad-report"),
        quick: bool = False, seed: int = 0) -> int:
    """The whole demo; returns 0 if every gradient check passes. ``out`` is checked
    before any training (a ValueError if it cannot be the report folder)."""
    started = time.perf_counter()
    settings = settings_for(dataset, epochs, quick, seed)
    out = check_output_dir(out)
    data = load_data(settings)
    console.print(f"[bold]normgrad demo[/]: {len(settings.hidden) + 1}-layer MLP on {settings.dataset} "
                  f"({len(data['X_train'])} train / {len(data['X_val'])} val / {len(data['X_test'])} test, "
                  f"{data['X_train'].shape[1]} features), initial weight std {settings.weight_scale:g}")
    flushing = kernels.flushing_denormals() if settings.flush_denormals else contextlib.nullcontext()
    with flushing:  # subnormal gradients made the unnormalized net's late epochs 10x slower
        results = train_all(settings, data, console)
    _print_results(console, settings, results)
    layer_checks = gradchecks.gradient_rows(seed)
    model_checks = gradchecks.model_gradient_checks(seed)
    ok = _print_checks(console, layer_checks, model_checks)
    large = gradchecks.large_mean_errors(seed=seed)
    console.print("float32 batch norm of data with mean 1e4, std 1 (65536 x 64), max |out - float64 reference|: "
                  + ", ".join(f"{name} {err:.1e}" for name, err in large.items()), markup=False)
    captions = figure_captions(settings, results)
    images = [(plot_curves(results, settings, out)[0], captions["curves"]),
              (plot_activations(results, out)[0], captions["activations"]),
              (render_graph(out, seed), captions["graph"])]
    report = write_report(out, settings, results, layer_checks, model_checks, large, images)
    console.print(f"report: [bold]{report}[/] (plots as PNG and SVG beside it), "
                  f"{time.perf_counter() - started:.0f} s in all")
    return 0 if ok else 1


def render_graph(out: Path, seed: int) -> str:
    """Draw the batch-norm graph into ``out/batchnorm-graph.png``; returns the file name."""
    from ..autograd import render

    y, _, _ = graph_walk.build("batch", graph_walk.DEFAULT_SHAPES["batch"], seed)
    path = out / "batchnorm-graph.png"
    render(y, path, title="batch norm: forward (black) and backward (red)")
    return path.name
