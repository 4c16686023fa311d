"""From the verdicts on a function's outputs and the errors of its cases to its status
(ok, wrong, error, unfinished), and the choice between the gamma layouts it was run with.
"""

from __future__ import annotations

from .catalog import FunctionReport

UNFINISHED_ERRORS = ("NotImplementedError", "returned-None", "not-implemented")  # what a stub does
PY2_NAMES = {"xrange": "range", "raw_input": "input", "unicode": "str", "basestring": "str", "unichr": "chr",
             "iteritems": "items", "has_key": "in", "izip": "zip"}


def unfinished_error(e: dict) -> bool:
    """An exception a function that is not written yet raises: NotImplementedError, ``assert
    False``, a TODO."""
    if e.get("type") in UNFINISHED_ERRORS:
        return True
    text = f"{e.get('message') or ''} {e.get('code') or ''}"
    return e.get("type") == "AssertionError" and (
        (e.get("code") or "").replace(" ", "").startswith("assertFalse") or "TODO" in text
        or "implement" in text.lower())


def errors_of(recs: list[dict]) -> list[dict]:
    """What the user's code raised, per case that raised."""
    return [r["error"] for r in recs if "error" in r]


def _raised(report: FunctionReport, raised: list[dict], verdicts: dict[str, str]) -> None:
    report.exception = raised[0]
    report.status = "error"
    if raised[0].get("type") == "NameError":
        name = (raised[0].get("message") or "").split("'")[1:2]
        if name and name[0] in PY2_NAMES:
            report.note(f"{name[0]} is Python 2: in Python 3 use {PY2_NAMES[name[0]]}")
    if raised[0].get("type") == "wrong-return":
        report.diagnose("wrong-shape", raised[0]["message"])
    elif not all(v == "missing" for v in verdicts.values()):
        report.note(f"it raised on {len(raised)} case(s); the other cases were compared")


def _unfinished(report: FunctionReport, missing: list[str], verdicts: dict[str, str], stops: list[dict]) -> None:
    report.diagnoses = [d for d in report.diagnoses if d.id == "inputs-modified"]
    report.status = "unfinished"
    what = "all of it" if len(missing) == len(verdicts) else ", ".join(missing)
    if stops:
        what += f" (it stops at `{stops[0]['code']}`" + (f", line {stops[0]['line']})" if stops[0].get("line")
                                                         else ")")
    report.diagnose("not-implemented", f"still to write: {what}")


def conclude(report: FunctionReport, verdicts: dict[str, str], case_errors: list[dict], modified: set,
             strict: bool, primary: str) -> FunctionReport:
    """The status once every output and every case is judged. A function whose ``primary``
    output (out, dx) is not written yet is unfinished, whatever its other outputs are."""
    if modified:
        report.diagnose("inputs-modified", f"modified: {', '.join(sorted(modified))}")
    raised = [e for e in case_errors if not unfinished_error(e)]
    stops = [e for e in case_errors if unfinished_error(e) and e.get("code")]
    missing = [k for k, v in verdicts.items() if v == "missing"]
    wrong = [k for k, v in verdicts.items() if v == "wrong"]
    if raised:
        _raised(report, raised, verdicts)
    elif verdicts.get(primary) != "missing" and (wrong or (report.diagnoses and verdicts)):
        report.status = "wrong"
    elif missing or (case_errors and not verdicts):
        _unfinished(report, missing, verdicts, stops)
        return report
    if report.status != "ok" and wrong and not report.diagnoses and not any(n.startswith("dx:") for n in report.notes):
        report.note(f"wrong outputs: {', '.join(wrong)} (no known mistake matches)")
    if missing and report.status != "ok":
        report.note(f"not implemented yet: {', '.join(missing)}")
    return report


def pick_layout(reports: dict[str, FunctionReport], kind: str, doc_layout: str | None = None) -> FunctionReport:
    """The report of the gamma layout the function's docstring states; else the one that works:
    right first, then one that ran."""
    if doc_layout in reports and len(reports) > 1:
        report = reports[doc_layout]
        report.note(f"gamma and beta were passed with shape {doc_layout}, as your docstring states")
        other, other_report = next((k, r) for k, r in reports.items() if k != doc_layout)
        if not report.ok and other_report.ok:
            report.note(f"with gamma and beta of shape {other} it is right: make it work with the shape your "
                        "docstring states, which the notebook passes")
        return report
    ordered = list(reports.values())
    report = next((r for r in ordered if r.ok), None) or next((r for r in ordered if r.status != "error"),
                                                             ordered[0])
    if len(reports) > 1:  # the course documents both (1, C, 1, 1) and (C,)
        layout = next(k for k, r in reports.items() if r is report)
        report.note(f"gamma and beta were passed with shape {layout}")
        first_layout, first = next(iter(reports.items()))
        if report is not first and report.ok and first.diagnoses:
            report.note(f"with gamma and beta of shape {first_layout}, as the notebook passes them, it is wrong: "
                        + "; ".join(d.detail for d in first.diagnoses if d.detail))
    return report
