"""Check a learner's own batch-norm implementation and say what is wrong, and where.

    normgrad check my_layers.py [--json] [--timeout S]      # command line
    normgrad.diagnose.check(globals())                      # notebook: a namespace or a module

Every CS231n-named function present (``batchnorm_forward``, ``batchnorm_backward``,
``batchnorm_backward_alt``, ``layernorm_*``, ``spatial_batchnorm_*``,
``spatial_groupnorm_*``) is run on fixed float64 cases and compared with normgrad's
reference: forward in train and test mode (outputs, running statistics after several
steps, inputs left unmodified) and backward with random upstream gradients, random
gamma/beta and inputs with a non-zero mean, on shapes including N=2 and D=1.

A wrong output is matched against known mistakes, each reported with a stable id, a
one-line explanation and the fix (``analysis.CATALOG``); a wrong dx that matches none
is localized to the paths of the graph it runs along.

From the command line each function runs in its own process (a few at a time) with a
time limit, so a
hang, a crash, ``sys.exit`` or a flood of output in the user's code is reported for
that function. ``check(namespace)`` runs in-process (a notebook's functions cannot be
sent to another process); exceptions and ``sys.exit`` are still caught.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import probe
from .analysis import CATALOG, FunctionReport, analyze

__all__ = ["check", "check_file", "Report", "FunctionReport", "CATALOG", "FUNCTIONS"]

FUNCTIONS = probe.FUNCTIONS


@dataclass
class Report:
    source: str
    functions: list[FunctionReport] = field(default_factory=list)
    load_error: dict | None = None

    @property
    def ok(self) -> bool:
        return self.load_error is None and bool(self.functions) and all(f.ok for f in self.functions)

    @property
    def exit_code(self) -> int:
        """0 when everything present is correct, 1 when something is wrong, 2 when the file cannot be loaded."""
        if self.load_error is not None or not self.functions:
            return 2
        return 0 if self.ok else 1

    def __getitem__(self, name: str) -> FunctionReport:
        for f in self.functions:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_json(self) -> dict:
        return {"source": self.source, "ok": self.ok, "exit_code": self.exit_code, "load_error": self.load_error,
                "functions": {f.name: f.to_json() for f in self.functions}}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)


def check(namespace_or_module) -> Report:
    """Check the functions of a namespace dict (e.g. ``globals()``) or a module, in-process."""
    namespace = namespace_or_module if isinstance(namespace_or_module, dict) else vars(namespace_or_module)
    source = getattr(namespace_or_module, "__name__", "namespace")
    report = Report(str(source))
    for name in FUNCTIONS:
        if callable(namespace.get(name)):
            report.functions.append(analyze(name, probe.run_function(namespace, name)))
    if not report.functions:
        report.load_error = probe.error_info("nothing-to-check", "no CS231n-named functions found "
                                             f"(looked for {', '.join(FUNCTIONS)})")
    return report


def _died(name: str, child, timeout: float) -> FunctionReport:
    if child.timed_out:
        return FunctionReport(name, "timeout", notes=[f"did not finish within {timeout:g} s (an endless loop?)"],
                              output=child.output)
    rc = child.returncode
    how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exited with status {rc}"
    return FunctionReport(name, "crash", notes=[f"the process running it {how} without reporting back "
                                                "(os._exit, a crash in native code, or out of memory?)"],
                          output=child.output)


def check_file(path, timeout: float = 10.0) -> Report:
    """Check the functions defined in the Python file ``path``, each in its own process
    with ``timeout`` seconds (loading the file included)."""
    from .runner import KEEP_OUTPUT, run_child

    path = Path(path)
    report = Report(str(path))
    if not path.is_file():
        report.load_error = probe.error_info("FileNotFoundError", f"no such file: {path}", str(path))
        return report
    found = run_child(path, "__discover__", timeout)
    if found.result is None:
        why = "timed out" if found.timed_out else f"died (status {found.returncode})"
        report.load_error = {**probe.error_info("load-failed", f"loading the file {why}", str(path)),
                             "output": found.output}
        return report
    if "load_error" in found.result:
        report.load_error = found.result["load_error"]
        return report
    names = found.result["functions"]
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        children = list(pool.map(lambda name: run_child(path, name, timeout), names))
    for name, child in zip(names, children):
        if child.result is None:
            function = _died(name, child, timeout)
        elif "load_error" in child.result:
            function = FunctionReport(name, "error", exception=child.result["load_error"])
        else:
            function = analyze(name, child.result)
        printed = max(child.output_bytes, (child.result or {}).get("output_chars", 0))
        if printed > KEEP_OUTPUT:
            function.notes.append(f"it printed {printed:,} characters; only the start was kept")
        function.output = function.output or child.output
        report.functions.append(function)
    if not report.functions:
        report.load_error = probe.error_info("nothing-to-check", f"the file defines none of {', '.join(FUNCTIONS)}",
                                             str(path))
    return report
