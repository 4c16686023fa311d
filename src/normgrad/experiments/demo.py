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
import html
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import kernels
from .._io import atomic_write
from ..gradcheck import eval_numerical_gradient, rel_error
from ..classifiers import FullyConnectedNet
from ..solver import Solver
from . import gradchecks, graph_walk

MODELS = (("no norm", None), ("batch norm", "batchnorm"), ("layer norm", "layernorm"))


@dataclass
class Settings:
    """Everything that decides a run; written into the report."""

    dataset: str = "mnist1d"
    epochs: int = 40
    seed: int = 0
    hidden: tuple[int, ...] = (256,) * 7
    weight_scale: float = 0.05
    learning_rate: float = 3e-3
    lr_decay: float = 0.9
    batch_size: int = 50
    dropout_keep_ratio: float = 0.9
    reg: float = 1e-3
    target_accuracy: float = 0.6
    max_train: int | None = None  # cap on training examples (--quick)
    flush_denormals: bool = True  # training runs with subnormal floats flushed to zero (kernels/_fpmode.py)

    @classmethod
    def quick(cls, dataset: str, seed: int) -> "Settings":
        return cls(dataset=dataset, epochs=3, seed=seed, hidden=(32,) * 3, learning_rate=5e-3, batch_size=50,
                   target_accuracy=0.3, max_train=600)


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


def _load(settings: Settings) -> dict[str, np.ndarray]:
    from ..data import DATASETS

    if settings.dataset not in DATASETS:
        raise ValueError(f"--dataset must be one of {sorted(DATASETS)}, got {settings.dataset!r}")
    data = DATASETS[settings.dataset](seed=settings.seed)
    if settings.max_train:
        data["X_train"], data["y_train"] = data["X_train"][: settings.max_train], data["y_train"][: settings.max_train]
    return data


HIST_EDGES = np.linspace(-4.0, 4.0, 41)


def _record(model: FullyConnectedNet, probe: tuple[np.ndarray, np.ndarray], result: RunResult) -> None:
    """Histogram and std of each hidden layer's pre-activations on the probe batch.

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


def _steps_to(val_acc: list[float], target: float, per_epoch: int) -> int | None:
    for epoch, acc in enumerate(val_acc, start=1):
        if acc >= target:
            return epoch * per_epoch
    return None


def train_all(settings: Settings, data, console) -> list[RunResult]:
    """Train the MLP once per normalization, same seeds; record curves and activations."""
    probe = data["X_val"][:500], data["y_val"][:500]
    results = []
    for label, norm in MODELS:
        model = FullyConnectedNet(list(settings.hidden), input_dim=data["X_train"].shape[1],
                                  num_classes=int(data["y_train"].max()) + 1, normalization=norm,
                                  dropout_keep_ratio=settings.dropout_keep_ratio, reg=settings.reg,
                                  weight_scale=settings.weight_scale, rng=settings.seed)
        result = RunResult(label, norm, [], [], [], 0.0, 0.0, None, 0.0, 0)
        _record(model, probe, result)
        solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": settings.learning_rate},
                        lr_decay=settings.lr_decay, batch_size=settings.batch_size, num_epochs=settings.epochs,
                        num_train_samples=1000, verbose=False, seed=settings.seed, progress=True, console=console,
                        label=label, epoch_callback=lambda s, r=result: _record(s.model, probe, r))
        solver.train()  # ends with the best (validation) parameters in the model
        test_pred = np.argmax(model.loss(data["X_test"]), axis=1)
        result.loss_history = solver.loss_history
        result.train_acc_history, result.val_acc_history = solver.train_acc_history, solver.val_acc_history
        result.best_val_acc = solver.best_val_acc
        result.test_acc = float(np.mean(test_pred == data["y_test"]))
        result.iterations_per_epoch = solver.iterations_per_epoch
        result.steps_to_target = _steps_to(solver.val_acc_history, settings.target_accuracy,
                                           solver.iterations_per_epoch)
        result.seconds_per_epoch = float(np.mean(solver.epoch_times)) if solver.epoch_times else 0.0
        results.append(result)
    return results


def model_gradient_checks(seed: int) -> list[dict]:
    """Numeric gradient check of the demo's architecture, small and in float64.

    One row per (model, parameter kind): the largest relative error over the
    layers, with CS231n's bounds (weights < 1e-4; biases, gamma, beta < 1e-7). A
    bias feeding a batch norm has gradient 0 (the norm removes it): both sides are
    checked to be round-off and reported as such.
    """
    rng = np.random.default_rng(seed)
    X, y = rng.normal(0.5, 1.0, (6, 5)), rng.integers(4, size=6)
    rows = []
    for label, norm in MODELS:
        for reg in (0.0, 0.5):
            model = FullyConnectedNet([7, 6, 5], input_dim=5, num_classes=4, normalization=norm, reg=reg,
                                      weight_scale=0.5, dtype=np.float64, rng=seed)
            for name in model.params:
                if name.startswith(("gamma", "beta")):
                    model.params[name] = rng.normal(1.0 if name.startswith("gamma") else 0.0, 0.5,
                                                    model.params[name].shape)
            _, grads = model.loss(X, y)
            worst: dict[str, float] = {}
            for name, value in model.params.items():
                numeric = eval_numerical_gradient(lambda _: model.loss(X, y)[0], value, h=1e-4, order=4)
                kind = name.rstrip("0123456789")
                if norm == "batchnorm" and kind == "b" and f"gamma{name[1:]}" in model.params:
                    err = max(float(np.abs(grads[name]).max()), float(np.abs(numeric).max()))
                    kind = "b (into BN: |grad|)"
                else:
                    err = rel_error(grads[name], numeric)
                worst[kind] = max(worst.get(kind, 0.0), err)
            for kind, err in worst.items():
                bound = 1e-4 if kind == "W" else 1e-7
                rows.append({"model": label, "reg": reg, "param": kind, "error": err, "ok": err < bound,
                             "bound": bound})
    return rows


# ----------------------------------------------------------------------------- plots


def _save_figure(fig, out: Path, stem: str) -> list[str]:
    names = []
    for ext in ("png", "svg"):
        path = out / f"{stem}.{ext}"
        atomic_write(path, lambda tmp, ext=ext: fig.savefig(tmp, format=ext, dpi=110, bbox_inches="tight"))
        names.append(path.name)
    return names


COLORS = {"no norm": "#7f7f7f", "batch norm": "#d62728", "layer norm": "#1f77b4"}


def plot_curves(results: list[RunResult], settings: Settings, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for r in results:
        c = COLORS[r.label]
        loss = np.asarray(r.loss_history)
        k = max(1, len(loss) // 100)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        axes[0].plot(np.arange(len(smooth)) + k, smooth, color=c, label=r.label)
        epochs = np.arange(1, len(r.val_acc_history) + 1) * r.iterations_per_epoch
        axes[1].plot(epochs, r.train_acc_history, color=c, label=r.label)
        axes[2].plot(epochs, r.val_acc_history, color=c, label=r.label)
    axes[0].set(title="training loss (moving average)", xlabel="iteration", ylabel="loss")
    axes[1].set(title="training accuracy", xlabel="iteration", ylabel="accuracy")
    axes[2].set(title="validation accuracy", xlabel="iteration", ylabel="accuracy")
    axes[2].axhline(settings.target_accuracy, color="black", lw=0.8, ls=":", label="target")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{len(settings.hidden) + 1}-layer MLP on {settings.dataset}, initial weight std "
                 f"{settings.weight_scale:g}, same seed")
    names = _save_figure(fig, out, "curves")
    plt.close(fig)
    return names


def plot_activations(results: list[RunResult], out: Path) -> list[str]:
    """Rows: models; columns: hidden layers; each panel overlays the pre-activation
    histogram before training, after the first epoch and at the end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = len(results[0].activation_hist[0])
    fig, axes = plt.subplots(len(results), layers, figsize=(2.1 * layers, 2.0 * len(results)), sharex=True,
                             squeeze=False)
    centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    width = HIST_EDGES[1] - HIST_EDGES[0]
    for row, r in enumerate(results):
        last = len(r.activation_hist) - 1
        moments = [(0, "before training", "#bbbbbb"), (min(1, last), "after epoch 1", "#ff9f40"),
                   (last, f"after epoch {last}", COLORS[r.label])]
        for layer in range(layers):
            ax = axes[row, layer]
            for epoch, name, color in moments:
                counts = np.asarray(r.activation_hist[epoch][layer], dtype=float)
                ax.step(centres, counts / max(counts.sum(), 1) / width, where="mid", color=color, label=name)
            ax.set_yticks([])
            std = r.activation_std[last][layer]
            ax.set_title(f"layer {layer + 1}  std {r.activation_std[0][layer]:.2g}→{std:.2g}", fontsize=8)
            if layer == 0:
                ax.set_ylabel(r.label)
        axes[row, -1].legend(fontsize=6, loc="upper right")
    fig.suptitle("pre-activations (after the norm, before the relu) of each hidden layer on a fixed "
                 "validation batch, training-mode statistics")
    names = _save_figure(fig, out, "activations")
    plt.close(fig)
    return names


# ----------------------------------------------------------------------------- report


def _table_rows(results, settings):
    rows = []
    for r in results:
        steps = f"> {len(r.loss_history)} (not reached)" if r.steps_to_target is None else str(r.steps_to_target)
        rows.append((r.label, f"{r.best_val_acc:.3f}", f"{r.test_acc:.3f}", steps, f"{r.seconds_per_epoch:.2f}"))
    return rows


HEADERS = ("model", "best val acc", "test acc", "steps to {target} val acc", "s / epoch")


def write_report(out: Path, settings: Settings, results, layer_checks, model_checks, large_mean, images) -> Path:
    """report.html (plots referenced by relative path) and results.json, written atomically."""
    esc = html.escape
    head = [h.format(target=settings.target_accuracy) for h in HEADERS]
    main_rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                        for row in _table_rows(results, settings))
    layer_rows = "".join(
        f"<tr><td>{esc(r.layer)}</td><td>{esc(r.backward)}</td><td>{r.dx:.1e}</td><td>{r.dgamma:.1e}</td>"
        f"<td>{r.dbeta:.1e}</td></tr>" for r in layer_checks)
    model_rows = "".join(
        f"<tr><td>{esc(r['model'])}</td><td>{r['reg']:g}</td><td>{esc(r['param'])}</td><td>{r['error']:.1e}</td>"
        f"<td>{'ok' if r['ok'] else 'FAIL'} (&lt; {r['bound']:g})</td></tr>" for r in model_checks)
    figures = "".join(f'<figure><img src="{esc(name)}" alt="{esc(name)}"><figcaption>{esc(caption)}</figcaption>'
                      f"</figure>" for name, caption in images)
    settings_json = esc(json.dumps(asdict(settings), indent=1))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>normgrad demo report</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
img{{max-width:100%}}figure{{margin:1.5em 0}}pre{{background:#f6f6f6;padding:1em}}</style></head><body>
<h1>What batch norm does to training</h1>
<p>The same {len(settings.hidden) + 1}-layer MLP (hidden widths {list(settings.hidden)}, initial weight std
{settings.weight_scale:g}, Adam, same seed) trained on <b>{esc(settings.dataset)}</b> for {settings.epochs} epochs
without normalization, with batch norm and with layer norm.</p>
<table><tr>{"".join(f"<th>{esc(h)}</th>" for h in head)}</tr>{main_rows}</table>
{figures}
<h2>Gradient checks</h2>
<p>Normalization layers, float64, random upstream gradient and random gamma/beta (relative error):</p>
<table><tr><th>layer</th><th>backward</th><th>dx</th><th>dgamma</th><th>dbeta</th></tr>{layer_rows}</table>
<p>The demo's model, small and in float64 (largest relative error per parameter kind):</p>
<table><tr><th>model</th><th>reg</th><th>parameter</th><th>error</th><th></th></tr>{model_rows}</table>
<p>float32 batch norm of data with mean 1e4, std 1 (65536 &times; 64), max |out &minus; float64 reference|:
{esc(", ".join(f"{name} {err:.1e}" for name, err in large_mean.items()))}</p>
<h2>Settings</h2><pre>{settings_json}</pre>
</body></html>
"""
    atomic_write(out / "results.json", lambda tmp: tmp.write_text(json.dumps({
        "settings": asdict(settings), "runs": [asdict(r) for r in results],
        "layer_gradient_checks": [asdict(r) for r in layer_checks], "model_gradient_checks": model_checks,
        "float32_large_mean_errors": large_mean,
    }, indent=1)))
    return atomic_write(out / "report.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))


def run(console, dataset: str = "mnist1d", epochs: int | None = None, out: Path = Path("normgrad-report"),
        quick: bool = False, seed: int = 0) -> int:
    """The whole demo; returns 0 if every gradient check passes."""
    from rich.table import Table

    started = time.perf_counter()
    settings = Settings.quick(dataset, seed) if quick else Settings(dataset=dataset, seed=seed)
    if epochs is not None:
        if epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {epochs}")
        settings.epochs = epochs
    out = Path(out)
    data = _load(settings)
    console.print(f"[bold]normgrad demo[/]: {len(settings.hidden) + 1}-layer MLP on {settings.dataset} "
                  f"({len(data['X_train'])} train / {len(data['X_val'])} val / {len(data['X_test'])} test, "
                  f"{data['X_train'].shape[1]} features), initial weight std {settings.weight_scale:g}")
    flushing = kernels.flushing_denormals() if settings.flush_denormals else contextlib.nullcontext()
    with flushing:  # subnormal gradients made the unnormalized net's late epochs 10x slower
        results = train_all(settings, data, console)

    table = Table(title=f"Same net, same seed, {settings.epochs} epochs")
    for h in HEADERS:
        table.add_column(h.format(target=settings.target_accuracy), justify="left" if h == "model" else "right")
    for row in _table_rows(results, settings):
        table.add_row(*row)
    console.print(table)

    layer_checks = gradchecks.gradient_rows(seed)
    model_checks = model_gradient_checks(seed)
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
    large = gradchecks.large_mean_errors(seed=seed)
    console.print("float32 batch norm of data with mean 1e4, std 1 (65536 x 64), max |out - float64 reference|: "
                  + ", ".join(f"{name} {err:.1e}" for name, err in large.items()), markup=False)

    images = []
    names = plot_curves(results, settings, out)
    images.append((names[0], "loss and accuracy curves"))
    names = plot_activations(results, out)
    images.append((names[0], "per-layer pre-activation distributions over training"))
    images.append((_render_graph(out, seed), "the batch-norm graph: forward values (black), gradients (red)"))
    report = write_report(out, settings, results, layer_checks, model_checks, large, images)
    console.print(f"report: [bold]{report}[/] (plots as PNG and SVG beside it), "
                  f"{time.perf_counter() - started:.0f} s in all")
    return 0 if ok else 1


def _render_graph(out: Path, seed: int) -> str:
    from ..autograd import render

    y, _, _ = graph_walk.build("batch", graph_walk.DEFAULT_SHAPES["batch"], seed)
    path = out / "batchnorm-graph.png"
    render(y, path, title="batch norm: forward (black) and backward (red)")
    return path.name
