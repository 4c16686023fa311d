"""The check report for people: one block per function, ids with explanation and fix."""

from __future__ import annotations

from rich.markup import escape

STATUS = {"ok": "[green]ok[/]", "wrong": "[red]wrong[/]", "error": "[red]raised[/]",
          "timeout": "[red]timed out[/]", "crash": "[red]crashed[/]", "skipped": "[yellow]skipped[/]"}


def _where(info: dict) -> str:
    if not info.get("file"):
        return ""
    text = f" ({info['file']}, line {info['line']})"
    if info.get("code"):
        text += f"\n      {info['code']}"
    return text


def print_report(console, report) -> None:
    if report.load_error is not None:
        e = report.load_error
        console.print(f"[red]cannot check {escape(report.source)}[/]: {escape(e['type'])}: "
                      f"{escape(e['message'])}{escape(_where(e))}")
        return
    for f in report.functions:
        errors = ", ".join(f"{k} {v:.1e}" for k, v in f.errors.items())
        console.print(f"[bold]{f.name}[/]: {STATUS[f.status]}" + (f"   rel. error {errors}" if errors else ""))
        if f.exception:
            e = f.exception
            console.print(f"    {escape(e['type'])}: {escape(e['message'])}{escape(_where(e))}", highlight=False)
        for d in f.diagnoses:
            console.print(f"    [yellow]{d.id}[/]: {escape(d.explanation)}", highlight=False)
            console.print(f"      fix: {escape(d.fix)}", highlight=False)
            if d.detail:
                console.print(f"      ({escape(d.detail)})", highlight=False)
        for note in f.notes:
            console.print(f"    {escape(note)}", highlight=False)
        if f.status in ("timeout", "crash") and f.output.strip():
            tail = f.output.strip().splitlines()[-3:]
            console.print("    its last output: " + escape(" | ".join(line[:100] for line in tail)), highlight=False)
    bad = [f.name for f in report.functions if not f.ok]
    console.print("[green]all correct[/]" if not bad else f"[red]{len(bad)} of {len(report.functions)} wrong[/]: "
                  + ", ".join(bad))
