"""Atomic file writing: a file is either its old self or completely new, never half-written."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Callable

try:
    import fcntl
except ImportError:  # Windows: no flock; leftovers of killed writers stay there
    fcntl = None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_temp_of(name: str, path: Path) -> bool:
    """Whether ``name`` is a temporary file ``atomic_write(path)`` makes: ``.NAME.XXXXXXXX.SUFFIX``
    (``tempfile.mkstemp``'s eight random characters)."""
    return re.fullmatch(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}{re.escape(path.suffix)}", name) is not None


def remove_leftovers(path) -> list[Path]:
    """Delete the temporary files that writers to ``path`` killed half-way (SIGKILL, power
    loss) left beside it; returns them. A writer holds an exclusive lock on its temporary
    file until it is done, and the system drops the lock when the process dies, so a file
    that can be locked has no writer left; one being written now is left alone."""
    path = Path(path)
    if fcntl is None:
        return []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    removed = []
    for name in names:
        if not _is_temp_of(name, path):
            continue
        candidate = path.parent / name
        try:
            fd = os.open(candidate, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # locked: its writer is still at work
        else:
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
        finally:
            os.close(fd)
    return removed


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    If ``write`` raises, ``path`` is untouched and the temporary file is removed. If the
    process is killed instead, ``path`` is still untouched, and the temporary file it
    leaves is removed by the next ``atomic_write`` to the same path (``remove_leftovers``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    tmp = Path(tmp)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # held until the rename: tells remove_leftovers we are alive
            except OSError:  # a file system without locks: then remove_leftovers cannot lock it either
                pass
        # mkstemp makes the file private (0600); give it the mode a plain open() would
        # (or the mode of the file it replaces)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return path
