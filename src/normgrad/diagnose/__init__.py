"""Check a learner's own batch-norm implementation and say what is wrong, and where.

    normgrad check my_layers.py [--json] [--timeout S] [--strict]      # command line
    normgrad.diagnose.check(globals())                                   # notebook

Every CS231n-named function present (``batchnorm_forward``, ``batchnorm_backward``,
``batchnorm_backward_alt``, ``layernorm_*``, ``spatial_batchnorm_*``,
``spatial_groupnorm_*``) is run on fixed float64 cases and compared with normgrad's
reference: forward in train and test mode (outputs, running statistics after several
steps, inputs left unmodified) and backward with random upstream gradients, random
gamma/beta and inputs with a non-zero mean, on shapes including N=2, D=1 and G=1.

Each function gets one of three outcomes: **ok**; **wrong**, with the known mistakes
that match (``CATALOG``: a stable id, a one-line explanation, the fix); or **not
implemented yet** (id ``not-implemented``: it returns None, raises
NotImplementedError, or returns zeros, a constant or its input). Values that are
right in a shape differing only by size-1 axes ((1, D) for (D,)) are ok with a
note, wrong under ``strict``. The exit status is 1 when something is wrong or the
file cannot be loaded, else 0 (unfinished functions count as wrong under ``strict``).

From the command line each function runs in its own process with a time limit on its
own run, so a hang, a crash, ``sys.exit`` or a flood of output in the user's code is
reported for that function; the file is loaded as part of its package, or piece by
piece when it cannot be imported (``loader``). ``check(namespace)`` runs in-process.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .analysis import analyze
from .calling import error_info
from .catalog import CATALOG, FunctionReport
from .inputs import FUNCTIONS
from .probe import run_function

__all__ = ["check", "check_file", "Report", "FunctionReport", "CATALOG", "FUNCTIONS"]

ORDER = ("ok", "wrong", "not implemented yet", "not checked")


@dataclass
class Report:
    source: str
    functions: list[FunctionReport] = field(default_factory=list)
    load_error: dict | None = None
    notes: list[str] = field(default_factory=list)  # how the file was loaded
    hints: list[str] = field(default_factory=list)  # about the file as a whole (Python 2 code)
    strict: bool = False

    @property
    def ok(self) -> bool:
        return self.load_error is None and bool(self.functions) and all(f.ok for f in self.functions)

    def counts(self) -> dict[str, int]:
        """Functions per outcome, in ORDER, the empty ones left out."""
        found = [f.outcome for f in self.functions]
        return {o: found.count(o) for o in ORDER if o in found}

    def summary(self) -> str:
        """'5 ok, 1 wrong, 3 not implemented yet'."""
        return ", ".join(f"{n} {o}" for o, n in self.counts().items()) or "nothing checked"

    @property
    def exit_code(self) -> int:
        """1 when the file cannot be loaded or something is wrong (or, with ``strict``, not
        implemented yet or not checked); else 0."""
        if self.load_error is not None or not self.functions:
            return 1
        bad = ("wrong", "not implemented yet", "not checked") if self.strict else ("wrong",)
        return 1 if any(f.outcome in bad for f in self.functions) else 0

    def __getitem__(self, name: str) -> FunctionReport:
        for f in self.functions:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_json(self) -> dict:
        return {"source": self.source, "ok": self.ok, "exit_code": self.exit_code, "summary": self.summary(),
                "counts": self.counts(), "load_error": self.load_error, "notes": self.notes, "hints": self.hints,
                "functions": {f.name: f.to_json() for f in self.functions}}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def _repr_html_(self) -> str:
        """The report as an HTML table, for Jupyter."""
        from .render import report_html

        return report_html(self)


def _finish(report: Report, nothing: str) -> Report:
    if not report.functions and report.load_error is None:
        report.load_error = error_info("nothing-to-check", nothing)
    return report


def check(namespace_or_module, strict: bool = False) -> Report:
    """Check the functions of a namespace dict (e.g. ``globals()``) or a module, in-process."""
    namespace = namespace_or_module if isinstance(namespace_or_module, dict) else vars(namespace_or_module)
    source = getattr(namespace_or_module, "__name__", "namespace")
    report = Report(str(source), strict=strict)
    for name in FUNCTIONS:
        if callable(namespace.get(name)):
            report.functions.append(analyze(name, run_function(namespace, name), strict))
    return _finish(report, f"no CS231n-named functions found (looked for {', '.join(FUNCTIONS)})")


def _died(name: str, child, timeout: float) -> FunctionReport:
    other = child.running if child.running in FUNCTIONS and child.running != name else None
    if other is not None:  # it died inside the function it needs (its forward): that one is to blame
        how = (f"did not finish within {timeout:g} s (an endless loop?)" if child.timed_out
               else "crashed the process")
        return FunctionReport(name, "skipped", notes=[f"not checked: it needs {other} to build the cache, and "
                                                      f"{other} {how}"], output=child.output)
    if child.timed_out:
        return FunctionReport(name, "timeout", notes=[f"did not finish within {timeout:g} s of its own run "
                                                      "(an endless loop?)"], output=child.output)
    rc = child.returncode
    how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exited with status {rc}"
    return FunctionReport(name, "crash", notes=[f"the process running it {how} without reporting back "
                                                "(os._exit, a crash in native code, or out of memory?)"],
                          output=child.output)


def _broken(name: str, info: dict) -> FunctionReport:
    """A checked function whose source does not compile: an empty body is unfinished."""
    if info["type"] == "IndentationError" and "expected an indented block" in info["message"]:
        report = FunctionReport(name, "unfinished", exception=info)
        report.diagnose("not-implemented", "still to write: all of it (its body is empty, an IndentationError "
                                           "where the code should be)")
        return report
    return FunctionReport(name, "error", exception=info, notes=["its source does not compile, so it was not run"])


def check_file(path, timeout: float = 10.0, strict: bool = False, load_timeout: float | None = None) -> Report:
    """Check the functions defined in the Python file ``path``, each in its own process,
    with ``timeout`` seconds for its own run (and ``load_timeout`` for Python to start and
    the file to load; default ``runner.LOAD_TIMEOUT``)."""
    from .runner import KEEP_OUTPUT, LOAD_TIMEOUT, run_child

    load_timeout = LOAD_TIMEOUT if load_timeout is None else load_timeout
    path = Path(path)
    report = Report(str(path), strict=strict)
    if not path.is_file():
        report.load_error = error_info("FileNotFoundError", f"no such file: {path}", str(path))
        return report
    found = run_child(path, "__discover__", timeout, load_timeout)
    if found.result is None:
        why = "timed out" if found.timed_out else f"died (status {found.returncode})"
        report.load_error = {**error_info("load-failed", f"loading the file {why}", str(path)),
                             "output": found.output}
        return report
    if "load_error" in found.result:
        report.load_error = found.result["load_error"]
        return report
    names, broken = found.result["functions"], found.result.get("broken", {})
    report.notes = found.result.get("notes", [])
    report.hints = found.result.get("hints", [])
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        children = list(pool.map(lambda name: run_child(path, name, timeout, load_timeout), names))
    results = dict(zip(names, children))
    if len(names) > 1:  # a hang elsewhere may have starved it: a timeout counts only when it runs alone
        for name in names:
            if results[name].timed_out:
                results[name] = run_child(path, name, timeout, load_timeout)
    for name in FUNCTIONS:
        if name in broken:
            report.functions.append(_broken(name, broken[name]))
            continue
        if name not in results:
            continue
        child = results[name]
        if child.result is None:
            function = _died(name, child, timeout)
        elif "load_error" in child.result:
            function = FunctionReport(name, "error", exception=child.result["load_error"])
        else:
            function = analyze(name, child.result, strict)
        printed = max(child.output_bytes, (child.result or {}).get("output_chars", 0))
        if printed > KEEP_OUTPUT:
            function.note(f"it printed {printed:,} characters; only the start was kept")
        function.output = function.output or child.output
        report.functions.append(function)
    return _finish(report, f"the file defines none of {', '.join(FUNCTIONS)}")
