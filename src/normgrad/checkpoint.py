"""The checkpoint format: arrays in a NumPy archive, everything else in one JSON document.

A checkpoint holds a tree of dicts and lists whose leaves are NumPy arrays or
JSON values (numbers, strings, booleans, None). ``save`` moves each array into
the archive under a key of its own and leaves a reference to it in the JSON
(``{"__array__": key}``); ``load`` puts them back. Files are written atomically
(the previous file survives a failure; a writer killed half-way leaves a temporary
file that the next save to the same path removes) and read with ``allow_pickle=False``:
loading a checkpoint never runs code.

Format 3 (``FORMAT``) is format 2 with more in the tree (the Solver's checkpoints record
the model they belong to and all their settings); ``load`` reads both, and the tree it
returns has the file's ``"format"``.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ._io import atomic_write

FORMAT = "normgrad-checkpoint-3"
READABLE = (FORMAT, "normgrad-checkpoint-2")
_META = "__meta__"


def _flatten(tree, arrays: dict):
    """The tree with every array replaced by a reference; the arrays go into ``arrays``."""
    if isinstance(tree, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = tree
        return {"__array__": key}
    if isinstance(tree, dict):
        return {str(k): _flatten(v, arrays) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_flatten(v, arrays) for v in tree]
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def _unflatten(tree, arrays: dict):
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]]
        return {k: _unflatten(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_unflatten(v, arrays) for v in tree]
    return tree


def save(path, tree: dict) -> Path:
    """Write ``tree`` (a dict) to ``path`` atomically; returns the path."""
    arrays: dict[str, np.ndarray] = {}
    meta = {"format": FORMAT, **_flatten(tree, arrays)}
    buffer = io.BytesIO()
    np.savez(buffer, **{_META: np.array(json.dumps(meta))}, **arrays)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def load(path, required: tuple[str, ...] = ()) -> dict:
    """The tree saved at ``path``. A file that is not a complete normgrad checkpoint
    (another archive, a truncated file, missing ``required`` entries) raises a
    ValueError naming the file and what is wrong."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            files = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} cannot be read as a normgrad checkpoint: {err}") from None
    if _META not in files:
        raise ValueError(f"{path} is not a normgrad checkpoint: it has no {_META!r} entry "
                         f"(arrays found: {sorted(files)[:5]})")
    try:
        meta = json.loads(str(files.pop(_META)))
    except ValueError as err:
        raise ValueError(f"{path}: its {_META!r} entry is not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") not in READABLE:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{path} is not a normgrad checkpoint this version reads (format {found!r}; "
                         f"readable: {', '.join(READABLE)})")
    missing = [k for k in required if k not in meta]
    if missing:
        raise ValueError(f"{path} is an incomplete checkpoint: missing {missing}")
    try:
        return _unflatten(meta, files)
    except KeyError as err:
        raise ValueError(f"{path} is an incomplete checkpoint: array {err} is missing") from None
