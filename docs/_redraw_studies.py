"""Redraw the studies' figures on docs/tutorials/studies.md from the runs they show.

``docs/experiments/NAME.json`` holds one full ``normgrad experiment all`` run of study NAME
(its results.json less timing and figures: settings, runs, findings); the page quotes its
findings and shows ``docs/experiments/NAME.png``, drawn by the studies' own plotting code.
tests/test_docs.py draws the figures again and compares the findings with the page.

    .venv/bin/python docs/_redraw_studies.py              # redraw from docs/experiments/*.json
    .venv/bin/python docs/_redraw_studies.py RUNS_DIR     # take a new run's RUNS_DIR/NAME/results.json first
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "experiments"
KEEP = ("experiment", "description", "settings", "runs", "findings")


def recorded(name: str) -> dict:
    return json.loads((FOLDER / f"{name}.json").read_text())


def names() -> list[str]:
    """The studies whose runs are recorded (their figure is drawn by ``studies.plots``)."""
    from normgrad.studies import STUDIES

    return [name for name in STUDIES if (FOLDER / f"{name}.json").exists()]


def draw(out: Path) -> dict[str, Path]:
    """Every recorded study's figure drawn into ``out`` as NAME.png."""
    from normgrad.studies import plots

    out.mkdir(parents=True, exist_ok=True)
    drawn = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names():
            made = plots.plot(name, recorded(name)["runs"], Path(tmp))[0]
            shutil.copyfile(Path(tmp) / made, out / f"{name}.png")
            drawn[name] = out / f"{name}.png"
    return drawn


if __name__ == "__main__":
    if len(sys.argv) > 1:
        for results in sorted(Path(sys.argv[1]).glob("*/results.json")):
            saved = json.loads(results.read_text())
            keep = {k: saved[k] for k in KEEP if k in saved}
            (FOLDER / f"{results.parent.name}.json").write_text(json.dumps(keep, separators=(",", ":")))
            figure = results.parent / f"{results.parent.name}.png"
            if figure.exists():
                shutil.copyfile(figure, FOLDER / figure.name)
    for name, path in draw(FOLDER).items():
        print(f"wrote docs/experiments/{path.name}")
