"""The demo's report: ``report.html`` (plots referenced by relative path) and ``results.json``."""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path

from ..outputs import atomic_write
from .settings import Settings

HEADERS = ("model", "best val acc", "test acc", "steps to {target} val acc", "s / epoch")


def table_rows(results) -> list[tuple[str, ...]]:
    """One row per model, in the columns of ``HEADERS``."""
    rows = []
    for r in results:
        steps = f"> {len(r.loss_history)} (not reached)" if r.steps_to_target is None else str(r.steps_to_target)
        rows.append((r.label, f"{r.best_val_acc:.3f}", f"{r.test_acc:.3f}", steps, f"{r.seconds_per_epoch:.2f}"))
    return rows


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
    main_rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table_rows(results))
    layer_rows, model_rows = _check_tables(layer_checks, model_checks)
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
