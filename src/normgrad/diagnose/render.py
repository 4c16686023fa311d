"""The check report for people: one block per function, ids with explanation and fix;
as text (``print_report``) and as HTML for notebooks (``report_html``)."""

from __future__ import annotations

import html

from rich.markup import escape

STATUS = {"ok": "[green]ok[/]", "wrong": "[red]wrong[/]", "error": "[red]raised[/]",
          "timeout": "[red]timed out[/]", "crash": "[red]crashed[/]", "unfinished": "[yellow]not implemented yet[/]",
          "skipped": "[yellow]not checked[/]"}
COLORS = {"ok": "#1a7f37", "wrong": "#cf222e", "not implemented yet": "#9a6700", "not checked": "#6e7781"}


def where(info: dict) -> str:
    """' at layers.py:907 when G = 1, C = 4' for an exception's info."""
    text = ""
    if info.get("file"):
        text += f" at {info['file']}" + (f":{info['line']}" if info.get("line") is not None else "")
    if info.get("when"):
        text += f" when {info['when']}"
    return text


def _errors(f) -> str:
    """'   error dx 3.0e-16, ...   notebook rel_error dx 2.8e-06, ...': the error judged (on each
    output's own scale) and the figure the course notebook prints (``rel_error``)."""
    shown = {k: v for k, v in f.errors.items() if v != float("inf")}
    if f.status in ("unfinished", "skipped") or not shown:
        return ""
    text = "   error " + ", ".join(f"{k} {v:.1e}" for k, v in shown.items())
    book = {k: v for k, v in f.notebook.items() if k in shown and v != float("inf")}
    if book:
        text += "   notebook rel_error " + ", ".join(f"{k} {v:.1e}" for k, v in book.items())
    return text


def print_report(console, report) -> None:
    if report.load_error is not None:
        e = report.load_error
        console.print(f"[red]cannot check {escape(report.source)}[/]: {escape(e['type'])}: "
                      f"{escape(e['message'])}{escape(where(e))}", highlight=False)
        return
    for note in report.notes:
        console.print(f"[dim]{escape(note)}[/]", highlight=False)
    for f in report.functions:
        console.print(f"[bold]{f.name}[/]: {STATUS[f.status]}{_errors(f)}", highlight=False)
        if f.exception and f.status != "unfinished":
            e = f.exception
            console.print(f"    raised {escape(e['type'])}{escape(where(e))}: {escape(e['message'])}", highlight=False)
            if e.get("code"):
                console.print(f"      {escape(e['code'])}", highlight=False)
        for d in f.diagnoses:
            if d.id == "not-implemented":  # what is left is all a learner needs here
                console.print(f"    [yellow]{d.id}[/]: {escape(d.detail)}", highlight=False)
                continue
            console.print(f"    [yellow]{d.id}[/]: {escape(d.explanation)}", highlight=False)
            console.print(f"      fix: {escape(d.fix)}", highlight=False)
            if d.detail:
                console.print(f"      ({escape(d.detail)})", highlight=False)
        for note in f.notes:
            console.print(f"    {escape(note)}", highlight=False)
        if f.status in ("timeout", "crash") and f.output.strip():
            tail = f.output.strip().splitlines()[-3:]
            console.print("    its last output: " + escape(" | ".join(line[:100] for line in tail)), highlight=False)
    for hint in getattr(report, "hints", []):
        console.print(f"[yellow]hint[/]: {escape(hint)}", highlight=False)
    wrong = [f.name for f in report.functions if f.outcome == "wrong"]
    color = "red" if report.exit_code else "green"
    console.print(f"[{color}]{report.summary()}[/]" + (f" ({', '.join(wrong)})" if wrong else ""), highlight=False)


def _code(text: str) -> str:
    """Escaped text with its `code` spans as <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts)) if len(parts) % 2 else "`".join(parts)


def report_html(report) -> str:
    """A self-contained HTML table of the report (Jupyter's ``_repr_html_``)."""
    esc = html.escape
    if report.load_error is not None:
        e = report.load_error
        return (f"<p><b>normgrad check</b>: cannot check {esc(report.source)}: {esc(e['type'])}: "
                f"{esc(e['message'])}{esc(where(e))}</p>")
    rows = []
    for f in report.functions:
        parts = []
        if f.exception and f.status != "unfinished":
            e = f.exception
            parts.append(f"raised <code>{esc(e['type'])}</code>{esc(where(e))}: {esc(e['message'])}")
        for d in f.diagnoses:
            detail = f" <i>({esc(d.detail)})</i>" if d.detail else ""
            parts.append(f"<code>{esc(d.id)}</code>: {_code(d.explanation)}<br>fix: {_code(d.fix)}{detail}")
        parts += [esc(n) for n in f.notes]
        color = COLORS[f.outcome]
        rows.append(f"<tr><td><code>{esc(f.name)}</code></td><td style='color:{color};font-weight:bold'>"
                    f"{esc(f.outcome)}</td><td style='text-align:left'>{'<br>'.join(parts)}</td></tr>")
    notes = "".join(f"<p><i>{esc(n)}</i></p>" for n in report.notes + list(getattr(report, "hints", [])))
    return (f"<div><p><b>normgrad check</b> of {esc(report.source)}: {esc(report.summary())}</p>{notes}"
            "<table><tr><th>function</th><th>outcome</th><th style='text-align:left'>what to do</th></tr>"
            + "".join(rows) + "</table></div>")
