"""``normgrad experiment NAME|all``: run a study (or all of them), resuming from OUT.

Each study writes ``OUT/NAME/results.json`` and its figure (PNG and SVG) and rewrites
``OUT/report.html``; every finished run is saved as it completes, so re-running with
the same OUT resumes instead of recomputing.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..outputs import atomic_write, check_output_dir
from . import ln_check, plots, report
from .catalog import DESCRIPTIONS, STUDIES, configs_for, findings
from .runs import RunStore, run_all

NAMES = (*STUDIES, "layernorm-vs-torch", "all")


def run_study(name: str, out: Path, *, quick: bool = False, seed: int = 0, jobs: int | None = None,
              dataset: str = "mnist1d", data_root: str | None = None, console=None) -> dict:
    """Train (or resume) study ``name``; write its results, figure and the report. Returns the results."""
    from rich.progress import Progress

    jobs = jobs or os.cpu_count() or 1
    configs = configs_for(name, quick, seed, dataset, data_root)
    folder = Path(out) / name
    store = RunStore(folder)
    started = time.perf_counter()
    with Progress(console=console, transient=True, disable=console is None) as progress:
        task = progress.add_task(f"{name}: {len(configs)} runs", total=len(configs))
        runs = run_all(configs, store, jobs, on_done=lambda r: progress.advance(task))
    results = {"experiment": name, "description": DESCRIPTIONS[name],
               "settings": {"quick": quick, "seed": seed, "dataset": dataset, "jobs": jobs,
                            "runs": [asdict(c) for c in configs], "versions": _versions()},
               "runs": runs, "findings": findings(name, runs), "seconds": round(time.perf_counter() - started, 1)}
    results["figures"] = plots.plot(name, runs, folder)
    atomic_write(folder / "results.json", lambda tmp: tmp.write_text(json.dumps(results, indent=1)))
    report.write(Path(out))
    if console is not None:
        report.print_summary(console, results)
    return results


def run(console, name: str, out: Path, quick: bool = False, seed: int = 0, jobs: int | None = None,
        dataset: str = "mnist1d", data_root: str | None = None) -> int:
    """The command: one study, the layer-norm check, or ``all`` of them. Returns 0.
    ``out`` is checked before any training (a ValueError if it cannot be the output folder)."""
    if name not in NAMES:
        raise ValueError(f"unknown experiment {name!r}: choose from {', '.join(NAMES)}")
    out = check_output_dir(out)
    started = time.perf_counter()
    for study in (STUDIES if name == "all" else [name] if name in STUDIES else []):
        run_study(study, out, quick=quick, seed=seed, jobs=jobs, dataset=dataset, data_root=data_root,
                  console=console)
    if name in ("all", "layernorm-vs-torch"):
        ln_check.run(out, quick=quick, seed=seed, console=console)
    console.print(f"report: [bold]{Path(out) / 'report.html'}[/], {time.perf_counter() - started:.0f} s in all")
    return 0


def _versions() -> dict:
    from importlib.metadata import version

    import numba

    return {"normgrad": version("normgrad"), "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__}
