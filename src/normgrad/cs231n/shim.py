"""Write a small ``cs231n`` package into an assignment folder that re-exports normgrad.cs231n.

    python -m normgrad.cs231n shim DIR       # DIR/cs231n/layers.py: from normgrad.cs231n.layers import *, ...
    python -m normgrad.cs231n unshim DIR     # put the course's files back

Only the Python modules are written; everything else in DIR/cs231n (datasets,
notebook_images, your own files) stays. A course file that the shim replaces is kept
beside it as ``NAME.py.orig`` (once: a second ``shim`` keeps the first backup), and
``unshim`` moves it back. Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

from .._io import atomic_write
from . import MODULES

MARK = "# normgrad shim: re-exports normgrad.cs231n"


def _source(module: str) -> str:
    return f"{MARK}.{module}\nfrom normgrad.cs231n.{module} import *  # noqa: F401,F403\n"


def _path(root: Path, module: str) -> Path:
    parts = module.split(".")
    if module == "classifiers":
        return root / "classifiers" / "__init__.py"
    return root.joinpath(*parts[:-1], parts[-1] + ".py")


def _is_shim(path: Path) -> bool:
    return path.exists() and path.read_text(errors="replace").startswith(MARK)


def _assignment_folder(folder) -> Path:
    """``folder`` as a Path, if it is an existing folder; else a ValueError (nothing is created:
    a mistyped path must not become a new, empty assignment)."""
    path = Path(folder)
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise ValueError(f"{folder} {what}: give the assignment folder (the one holding the notebooks "
                         "and cs231n/)")
    return path


def write(folder) -> list[Path]:
    """Write the shim modules into ``folder/cs231n``; returns the files written. ``folder``
    must exist; every target is checked (folders are folders, files are files) before
    anything is written."""
    root = _assignment_folder(folder) / "cs231n"
    files = {m: _path(root, m) for m in MODULES}
    files["__init__"] = root / "__init__.py"
    for path in files.values():
        for parent in (p for p in path.parents if p == root or root in p.parents):
            if parent.exists() and not parent.is_dir():
                raise ValueError(f"{parent} is a file where the shim needs a folder; nothing was written")
        if path.exists() and not path.is_file():
            raise ValueError(f"{path} is not a file; nothing was written")
    written = []
    for module, path in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        backup = path.with_name(path.name + ".orig")
        if path.exists() and not _is_shim(path) and not backup.exists():
            path.replace(backup)
        text = f"{MARK}\n" if module == "__init__" else _source(module)
        atomic_write(path, lambda tmp, text=text: tmp.write_text(text))
        written.append(path)
    return written


def undo(folder) -> list[Path]:
    """Remove the shim's modules from ``folder/cs231n`` and put back the ``.orig`` files."""
    restored = []
    for path in sorted((_assignment_folder(folder) / "cs231n").rglob("*.py")):
        if not _is_shim(path):
            continue
        backup = path.with_name(path.name + ".orig")
        if backup.exists():
            backup.replace(path)
            restored.append(path)
        else:
            path.unlink()
    return restored
