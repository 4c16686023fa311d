"""The studies' report page (``OUT/report.html``, one section per study found in OUT)
and the table each study prints."""

from __future__ import annotations

import html
import json
from pathlib import Path

from ..outputs import atomic_write
from .catalog import STUDIES
from .runs import label

EXTRA = ("layernorm-vs-torch",)


def _summary_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of a study's table: one row per run."""
    swept = {"init-scale": "weight_scale", "batch-size": "batch_size", "conv-norms": "batch_size",
             "steps-to-accuracy": "learning_rate"}.get(results["experiment"])
    head = ["normalization"] + ([swept] if swept else []) + ["seed", "best val acc", "best train acc",
                                                            "final train loss"]
    rows = []
    for r in results["runs"]:
        row = [label(r["normalization"])] + ([f"{r[swept]:g}"] if swept else []) + [str(r["seed"])]
        loss = "diverged" if r["final_train_loss"] is None else f"{r['final_train_loss']:.3f}"
        rows.append(row + [f"{r['best_val_acc']:.3f}", f"{r['best_train_acc']:.3f}", loss])
    return head, rows


def print_summary(console, results: dict) -> None:
    from rich.table import Table

    head, rows = _summary_rows(results)
    table = Table(title=f"{results['experiment']} ({results['seconds']:.0f} s)")
    for h in head:
        table.add_column(h, justify="left" if h == "normalization" else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for f in results["findings"]:
        console.print(f"- {f}", markup=False)


def write(out: Path) -> Path:
    """Rewrite OUT/report.html from every OUT/NAME/results.json present."""
    esc = html.escape
    sections = []
    for name in (*STUDIES, *EXTRA):
        path = out / name / "results.json"
        if not path.exists():
            continue
        results = json.loads(path.read_text())
        findings = "".join(f"<li>{esc(f)}</li>" for f in results["findings"])
        figures = "".join(f'<img src="{esc(name)}/{esc(fig)}" alt="{esc(name)}">'
                          for fig in results.get("figures", [])[:1])
        table = ""
        if name in STUDIES:
            head, rows = _summary_rows(results)
            table = ("<details><summary>every run</summary><table><tr>"
                     + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
                     + "</table></details>")
        quick = " (--quick)" if results.get("settings", {}).get("quick") else ""
        sections.append(f"<h2 id='{esc(name)}'>{esc(name)}{quick}</h2><p>{esc(results['description'])}</p>"
                        f"{figures}<h3>Findings</h3><ul>{findings}</ul>{table}"
                        f"<p><small>{results['seconds']:.0f} s; settings and every run in "
                        f"<code>{esc(name)}/results.json</code></small></p>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>normgrad experiments</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
img{{max-width:100%}}</style></head><body>
<h1>What normalization does: the classic studies</h1>
<p>Made by <code>normgrad experiment</code>; every finding is computed from the runs below it.</p>
{"".join(sections) or "<p>No study has finished yet.</p>"}
</body></html>
"""
    return atomic_write(out / "report.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))
