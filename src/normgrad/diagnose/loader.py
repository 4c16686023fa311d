"""Load a learner's file for checking, even when it cannot be imported as a whole.

1. A file inside a package (its folder has ``__init__.py``) is imported as part of
   that package: the folder above the topmost package is put on ``sys.path``, so
   ``from cs231n.layer_utils import *`` and relative imports work from any working
   directory. A plain file is imported with its own folder on ``sys.path``.
2. When that fails (a course module that is not installed, Python 2 syntax in an
   unrelated function, an unfinished function that does not parse, code at the top
   that raises), the file is cut into its top-level pieces (by its syntax tree, or by
   its unindented lines when it does not parse), and each piece is compiled and run
   on its own, with ``numpy`` as ``np`` in scope. Pieces that fail are skipped and
   named; the functions that load are checked.

Errors point at the learner's file and line, never at importlib's frames.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .calling import error_info
from .inputs import FUNCTIONS

_TOP = re.compile(r"^(async\s+def|def|class|@|import|from)\b")
_DEF = re.compile(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)")


@dataclass
class Loaded:
    """What loading gave: the namespace, how it was loaded, and what could not be."""

    namespace: dict
    notes: list[str] = field(default_factory=list)
    broken: dict[str, dict] = field(default_factory=dict)  # checked function name -> why it did not load
    error: dict | None = None  # nothing usable at all
    hints: list[str] = field(default_factory=list)  # about the file as a whole


# Python 2 constructs: (pattern, what it is, the Python 3 spelling)
_PY2 = [
    (re.compile(r"^\s*print\s+(?![\s(=]|$)"), "a print statement", "print(...)"),
    (re.compile(r"^\s*except\s+[\w.]+\s*,\s*\w+\s*:"), "except X, e", "except X as e"),
    (re.compile(r"^\s*raise\s+[\w.]+\s*,"), "raise X, 'message'", "raise X('message')"),
    (re.compile(r"\bxrange\s*\("), "xrange", "range"),
    (re.compile(r"\.iteritems\s*\("), ".iteritems()", ".items()"),
    (re.compile(r"\.has_key\s*\("), ".has_key(k)", "k in d"),
    (re.compile(r"\braw_input\s*\("), "raw_input", "input"),
    (re.compile(r"\bcPickle\b"), "cPickle", "pickle"),
]


def python2_hint(source: str) -> str | None:
    """One line saying the file is Python 2 code, with its first Python 2 construct, or None."""
    for number, line in enumerate(source.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for pattern, what, instead in _PY2:
            if pattern.search(line):
                return (f"this is Python 2 code ({what} at line {number}: {line.strip()[:60]}); normgrad check runs "
                        f"Python 3: write {instead}, and the same for the rest of the file")
    return None


def syntax_info(err: SyntaxError, path: Path) -> dict:
    """A SyntaxError located in the learner's file."""
    return error_info(type(err).__name__, err.msg or str(err), err.filename or str(path), err.lineno,
                      (err.text or "").strip()[:200] or None)


def _package_root(path: Path) -> tuple[Path, str]:
    """(folder to put on sys.path, module name) for ``path``."""
    parts, folder = [path.stem], path.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return folder, ".".join(parts)


def _import(path: Path):
    root, name = _package_root(path)
    for entry in (str(path.parent), str(root)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if "." in name:
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location("user_solution", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["user_solution"] = module
    spec.loader.exec_module(module)
    return module


def load(path, describe) -> Loaded:
    """Load ``path``; ``describe(err, file)`` turns a runtime exception into error info."""
    path = Path(path).resolve()
    try:
        hint = python2_hint(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        hint = None
    try:
        loaded = Loaded(vars(_import(path)))
    except SyntaxError as err:
        why = f"{type(err).__name__} at line {err.lineno}: {err.msg}"
        loaded = _extract(path, why, describe)
    except (Exception, SystemExit) as err:  # noqa: BLE001 - the learner's file may raise anything
        info = describe(err, str(path))
        why = f"{info['type']}: {info['message']}" + (f" (line {info['line']})" if info.get("line") else "")
        loaded = _extract(path, why, describe)
    loaded.hints = [hint] if hint else []
    return loaded


def _pieces(source: str) -> list[tuple[int, int]]:
    """(first, last) line numbers (1-based, inclusive) of the file's top-level pieces."""
    lines = source.splitlines()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        tree = None
    if tree is not None:
        spans = []
        for node in tree.body:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            spans.append((first, node.end_lineno))
        return spans
    starts = [i + 1 for i, line in enumerate(lines) if _TOP.match(line)]
    starts = [1] + [s for s in starts if s != 1]
    spans = []
    for a, b in zip(starts, starts[1:] + [len(lines) + 1]):
        first = a  # decorators stay with the function below them
        spans.append((first, b - 1))
    merged = []
    for span in spans:  # a decorator line joins the piece that follows it
        if merged and lines[merged[-1][0] - 1].startswith("@") and merged[-1][1] == span[0] - 1:
            merged[-1] = (merged[-1][0], span[1])
        else:
            merged.append(span)
    return merged


def _extract(path: Path, why: str, describe) -> Loaded:
    import numpy

    source = path.read_text(encoding="utf-8", errors="replace")
    lines = source.splitlines()
    namespace = {"np": numpy, "numpy": numpy, "__name__": "user_solution", "__file__": str(path),
                 "__builtins__": __builtins__}
    loaded = Loaded(namespace, notes=[f"the file could not be imported as a whole ({why}); "
                                      "its functions were extracted and loaded one by one"])
    skipped = []
    for first, last in _pieces(source):
        text = "\n".join(lines[first - 1:last])
        if not text.strip():
            continue
        name = next((m.group(1) for line in text.splitlines() for m in [_DEF.match(line)] if m), None)
        try:
            code = compile("\n" * (first - 1) + text + "\n", str(path), "exec")
        except SyntaxError as err:
            info = syntax_info(err, path)
            if name in FUNCTIONS:
                loaded.broken[name] = info
            skipped.append(f"lines {first}-{last} ({info['type']}: {info['message']})")
            continue
        try:
            exec(code, namespace)  # noqa: S102 - the learner's own code, which the checker exists to run
        except (Exception, SystemExit) as err:  # noqa: BLE001
            info = describe(err, str(path))
            skipped.append(f"lines {first}-{last} ({info['type']}: {info['message'][:120]})")
    if skipped:
        loaded.notes.append("skipped: " + "; ".join(skipped))
    return loaded
