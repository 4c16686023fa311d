"""The demo's report: ``report.html`` (plots referenced by relative path) and ``results.json``."""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path

from ..outputs import atomic_write
from .settings import Settings

HEADERS = ("model", "best val acc", "test acc", "steps to {target} val acc", "s / epoch")


SMOKE = ("Smoke run (--quick): a {layers}-layer net of {width} units on {n} examples for {epochs} epoch(s). It shows "
         "that every part of the demo runs; its numbers say nothing about normalization. Run `normgrad demo` "
         "without --quick for the comparison.")


def table_rows(results, quick: bool = False) -> list[tuple[str, ...]]:
    """One row per model, in the columns of ``HEADERS``. In a smoke run (``quick``) a
    target that was not reached is a dash, not a result."""
    rows = []
    for r in results:
        if r.steps_to_target is not None:
            steps = str(r.steps_to_target)
        else:
            steps = "-" if quick else f"> {len(r.loss_history)} (not reached)"
        rows.append((r.label, f"{r.best_val_acc:.3f}", f"{r.test_acc:.3f}", steps, f"{r.seconds_per_epoch:.2f}"))
    return rows


def smoke_note(settings: Settings) -> str:
    """What a --quick run is, in one sentence (empty for a full run)."""
    if not settings.smoke:
        return ""
    return SMOKE.format(layers=len(settings.hidden) + 1, width=settings.hidden[0] if settings.hidden else 0,
                        n=settings.max_train or "all", epochs=settings.epochs)


def _by_label(results) -> dict:
    return {r.label: r for r in results}


def why(settings: Settings, results) -> list[str]:
    """The why of the run, in sentences with its own numbers: how the plain net's
    pre-activations shrink layer by layer before training, and what the norms change."""
    runs = _by_label(results)
    lines = []
    plain = runs.get("no norm")
    if plain is not None and plain.activation_std and len(plain.activation_std[0]) > 1:
        before = plain.activation_std[0]
        width = settings.hidden[0]
        gain = settings.weight_scale * (width / 2) ** 0.5
        lines.append(
            f"Before training, the plain net's pre-activations have a standard deviation of {before[0]:.2g} in "
            f"layer 1 and {before[-1]:.2g} in layer {len(before)}: each layer multiplies its input by weights of std "
            f"{settings.weight_scale:g} summed over {width} inputs, half of them zeroed by the ReLU, a factor of "
            f"about {settings.weight_scale:g} x sqrt({width}/2) = {gain:.2f} per layer. The deep layers see almost "
            f"nothing, and the gradients flowing back shrink the same way, so they learn slowly.")
    for label, what in (("batch norm", "over the batch"), ("layer norm", "over each example's features")):
        run = runs.get(label)
        if run is not None and run.activation_std:
            before = run.activation_std[0]
            lines.append(
                f"{label.capitalize()} rescales every layer's pre-activations to unit variance {what}, whatever the "
                f"weights: before training their std is {min(before):.2f} to {max(before):.2f} in all "
                f"{len(before)} layers.")
    if plain is not None and "batch norm" in runs:
        bn = runs["batch norm"]
        lines.append(f"Best validation accuracy: batch norm {bn.best_val_acc:.3f}, no normalization "
                     f"{plain.best_val_acc:.3f}" + (f", layer norm {runs['layer norm'].best_val_acc:.3f}"
                                                    if "layer norm" in runs else "") + ".")
    return lines


def figure_captions(settings: Settings, results) -> dict[str, str]:
    """What to look at in each figure, keyed by the figure's stem (curves, activations, graph)."""
    runs = _by_label(results)
    reached = sorted((r.steps_to_target, r.label) for r in results if r.steps_to_target is not None)
    first = (f"here {reached[0][1]} crosses it first, after {reached[0][0]} steps"
             if reached else "here no model reaches it")
    layers = len(results[0].activation_std[0]) if results and results[0].activation_std else 0
    plain = runs.get("no norm")
    shrink = (f" (std {plain.activation_std[0][0]:.2g} in layer 1, {plain.activation_std[0][-1]:.2g} in layer "
              f"{layers})" if plain is not None and plain.activation_std else "")
    return {
        "curves": "Loss, training and validation accuracy over training, one colour per model. Look at the right "
                  f"panel: the dotted line is the target accuracy {settings.target_accuracy:g}; {first}. A "
                  "training curve far above its validation curve is overfitting.",
        "activations": "Each hidden layer's pre-activations on a fixed validation batch (rows: models; columns: "
                       "layers 1 to the last; grey before training, orange after epoch 1, coloured at the end; the "
                       "panel titles give the std before -> after). Look at the top row's grey curves: without "
                       f"normalization they narrow layer by layer{shrink}; with batch norm every layer starts "
                       "at unit width.",
        "graph": "The batch-norm layer as nine gates: forward values in black, gradients in red. An orange border "
                 "marks a value that feeds two gates, whose gradients add up (x and xmu).",
    }


def _std_table(results) -> str:
    """Per-layer std of the pre-activations before training and at the end, one column pair per model."""
    if not results or not results[0].activation_std:
        return ""
    layers = len(results[0].activation_std[0])
    head = "".join(f"<th>{html.escape(r.label)}<br>before</th><th>{html.escape(r.label)}<br>end</th>" for r in results)
    rows = "".join(
        f"<tr><td>layer {k + 1}</td>" + "".join(
            f"<td>{r.activation_std[0][k]:.2g}</td><td>{r.activation_std[-1][k]:.2g}</td>" for r in results) + "</tr>"
        for k in range(layers))
    return f"<table><tr><th></th>{head}</tr>{rows}</table>"


def _check_tables(layer_checks, model_checks) -> tuple[str, str]:
    layer_rows = "".join(
        f"<tr><td>{html.escape(r.layer)}</td><td>{html.escape(r.backward)}</td><td>{r.dx:.1e}</td>"
        f"<td>{r.dgamma:.1e}</td><td>{r.dbeta:.1e}</td></tr>" for r in layer_checks)
    model_rows = "".join(
        f"<tr><td>{html.escape(r['model'])}</td><td>{r['reg']:g}</td><td>{html.escape(r['param'])}</td>"
        f"<td>{r['error']:.1e}</td><td>{'ok' if r['ok'] else 'FAIL'} (&lt; {r['bound']:g})</td></tr>"
        for r in model_checks)
    return layer_rows, model_rows


def write_report(out: Path, settings: Settings, results, layer_checks, model_checks, large_mean, images) -> Path:
    """report.html and results.json in ``out``, each written atomically."""
    esc = html.escape
    head = [h.format(target=settings.target_accuracy) for h in HEADERS]
    main_rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                        for row in table_rows(results, settings.smoke))
    layer_rows, model_rows = _check_tables(layer_checks, model_checks)
    figures = "".join(f'<figure><img src="{esc(name)}" alt="{esc(caption)}"><figcaption>{esc(caption)}'
                      + (f' (<a href="{esc(Path(name).with_suffix(".svg").name)}">SVG</a>)'
                         if (out / Path(name).with_suffix(".svg").name).exists() else "")
                      + "</figcaption></figure>" for name, caption in images)
    note = smoke_note(settings)
    smoke = f'<p class="smoke">{esc(note)}</p>' if note else ""
    why_html = "".join(f"<p>{esc(line)}</p>" for line in why(settings, results))
    std_table = _std_table(results)
    settings_json = esc(json.dumps(asdict(settings), indent=1))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>normgrad demo report</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
img{{max-width:100%}}.smoke{{background:#fff3cd;padding:.6em 1em}}figure{{margin:1.5em 0}}pre{{background:#f6f6f6;padding:1em}}</style></head><body>
<h1>What batch norm does to training</h1>
{smoke}
<p>The same {len(settings.hidden) + 1}-layer MLP (hidden widths {list(settings.hidden)}, initial weight std
{settings.weight_scale:g}, Adam, same seed) trained on <b>{esc(settings.dataset)}</b> for {settings.epochs} epochs
without normalization, with batch norm and with layer norm.</p>
<table><tr>{"".join(f"<th>{esc(h)}</th>" for h in head)}</tr>{main_rows}</table>
<h2>Why</h2>
{why_html}
<p>Standard deviation of each hidden layer's pre-activations (after the norm, before the ReLU) on a fixed
validation batch, before training and at the end:</p>
{std_table}
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
