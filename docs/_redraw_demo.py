"""Redraw the demo's figures on the documentation pages from the run they show.

``docs/demo/results.json`` holds the settings and the runs of one full ``normgrad demo``
(from its own results.json); README.md and docs/getting-started.md show its table, and
``docs/demo-curves.png`` / ``docs/demo-activations.png`` are its figures, drawn by the
demo's own plotting code. tests/test_docs.py draws them again and fails when they differ.

    .venv/bin/python docs/_redraw_demo.py                 # redraw from docs/demo/results.json
    .venv/bin/python docs/_redraw_demo.py RESULTS.json    # take a new run's results first
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
RESULTS = DOCS / "demo" / "results.json"


def load(path: Path = RESULTS):
    """(settings, results) of a demo run, as the demo's own types."""
    from normgrad.demo.settings import Settings
    from normgrad.demo.training import RunResult

    saved = json.loads(Path(path).read_text())
    fields = Settings.__dataclass_fields__
    settings = Settings(**{k: (tuple(v) if k == "hidden" else v) for k, v in saved["settings"].items() if k in fields})
    return settings, [RunResult(**run) for run in saved["runs"]]


def draw(out: Path, path: Path = RESULTS) -> dict[str, Path]:
    """The two figures drawn into ``out`` as demo-curves.png and demo-activations.png."""
    from normgrad.demo.plots import plot_activations, plot_curves

    settings, results = load(path)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        drawn = {"demo-curves.png": plot_curves(results, settings, tmp)[0],
                 "demo-activations.png": plot_activations(results, tmp)[0]}
        for name, made in drawn.items():
            shutil.copyfile(tmp / made, out / name)
    return {name: out / name for name in drawn}


if __name__ == "__main__":
    if len(sys.argv) > 1:
        saved = json.loads(Path(sys.argv[1]).read_text())
        RESULTS.write_text(json.dumps({"settings": saved["settings"], "runs": saved["runs"]}, separators=(",", ":")))
    for name, path in draw(DOCS).items():
        print(f"wrote {path.relative_to(DOCS.parent)}")
