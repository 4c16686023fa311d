"""Where a job's results go: output paths checked before any work, files written whole.

The jobs (``normgrad demo``, ``bench``, ``experiment``, ``graph``) train or time for
minutes before they write anything, so they check where they will write first:
``check_output_dir`` and ``check_output_file`` raise a ``ValueError`` naming the
option and the path (an existing file where a folder is wanted, a folder where a file
is, a file among its parent folders, a folder that cannot be written), and change
nothing. Then every file is written atomically (``atomic_write``: the old file or the
whole new one, never half of one), figures as PNG and SVG (``save_figure``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ._io import atomic_write

__all__ = ["atomic_write", "check_output_dir", "check_output_file", "save_figure"]


def writable_parent(path: Path, what: str) -> None:
    """The nearest existing folder above ``path`` is a folder, and can be written; else a
    ValueError that starts with ``what`` (the option or setting and its value)."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{what}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{what}: cannot write in {parent}")


def check_output_dir(path, option: str = "--out") -> Path:
    """``path`` as a Path, if it is a folder that can be written, or can be made one;
    else a ValueError naming ``option``. Creates nothing."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{option} {path} is an existing file, not a folder: "
                             "give a folder (it is made if missing)")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{option} {path}: cannot write in this folder")
        return path
    writable_parent(path, f"{option} {path}")
    return path


def check_output_file(path, option: str) -> Path:
    """``path`` as a Path, if a file can be written there; else a ValueError naming
    ``option``. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder: give a file name")
    writable_parent(path, f"{option} {path}")
    return path


def save_figure(fig, folder: Path, stem: str) -> list[str]:
    """Write a matplotlib figure as ``folder/stem.png`` and ``folder/stem.svg``, each
    atomically; returns the two file names, PNG first."""
    names = []
    for ext in ("png", "svg"):
        path = Path(folder) / f"{stem}.{ext}"
        atomic_write(path, lambda tmp, ext=ext: fig.savefig(tmp, format=ext, dpi=110, bbox_inches="tight"))
        names.append(path.name)
    return names
