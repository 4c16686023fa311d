"""The architecture as docs/architecture.md draws it: lower layers never import higher
ones, siblings share through the core, the jobs (demo, bench, studies) sit above the
library and use its public names only, never another job's private ones, the core
import stays light, and every subpackage is an attribute of ``normgrad``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "normgrad"

# Each top-level part of the package and its layer; a part may import only parts of
# lower layers (and itself). The order is the picture in docs/architecture.md.
LAYERS = {
    "core": 0, "_io": 0,
    "functional": 1, "kernels": 1, "autograd": 1, "gradcheck": 1, "data": 1, "outputs": 1,
    "nn": 2, "classifiers": 2, "torch": 2, "checkpoint": 2, "optim": 2, "training": 3,
    "solver": 4,
    "data_parallel": 5,
    "demo": 6, "bench": 6, "studies": 6, "diagnose": 6, "cs231n": 6,
    "cli": 7, "__main__": 8,
}
# The jobs: each a package above the library. A job may use another job's public names
# (the studies train from the demo's settings, the benchmark times the demo's float32
# case), never its private ones.
JOBS = {"demo", "bench", "studies", "diagnose", "cs231n"}
# The jobs this round built: they use the library's public names only (no ``_module``, no
# ``_name``), so the library's internals can change under them.
PUBLIC_ONLY = {"demo", "bench", "studies"}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _imports(path: Path) -> set[str]:
    """normgrad modules ``path`` imports (absolute names), anywhere in the file."""
    module = "normgrad." + ".".join(path.relative_to(SRC).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
                found |= {name} if node.module else {f"{base}.{a.name}" for a in node.names}
            elif node.module and node.module.startswith("normgrad"):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("normgrad")}
    return found


def _imported_names(path: Path) -> set[str]:
    """Every normgrad name ``path`` imports, as absolute dotted names: the module, and for
    ``from M import a`` also ``M.a``."""
    module = "normgrad." + ".".join(path.relative_to(SRC).with_suffix("").parts)
    package = (module if path.name == "__init__.py" else module.rsplit(".", 1)[0]).removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                root = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{root}.{node.module}" if node.module else root
            if base.startswith("normgrad"):
                found |= {base} | {f"{base}.{a.name}" for a in node.names if a.name != "*"}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("normgrad")}
    return found


def _private(name: str) -> bool:
    return any(part.startswith("_") and part != "__init__" for part in name.split(".")[1:])


def test_jobs_use_no_other_jobs_privates_and_only_the_librarys_public_names():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        here = "normgrad." + ".".join(path.relative_to(SRC).with_suffix("").parts)
        a = _part(here)
        if a not in JOBS:
            continue
        for target in _imported_names(path):
            b = _part(target)
            if b == a or b == "__init__":
                continue
            if _private(target) and (b in JOBS or a in PUBLIC_ONLY):
                wrong.append(f"{here} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_checks_see_private_imports(tmp_path, monkeypatch):
    """The rule above catches what the old tree did: a study importing the demo's ``_save_figure``."""
    job = tmp_path / "studies"
    job.mkdir()
    (job / "plots.py").write_text("from ..demo.job import _save_figure\nfrom .. import _io\nfrom .runs import x\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    names = _imported_names(job / "plots.py")
    assert {n for n in names if _private(n)} == {"normgrad.demo.job._save_figure", "normgrad._io"}
    assert "normgrad.studies.runs.x" in names


def test_every_part_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert parts - {"__init__"} == set(LAYERS)


def test_lower_layers_never_import_higher_ones():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        here = "normgrad." + ".".join(path.relative_to(SRC).with_suffix("").parts)
        if here == "normgrad.__init__":
            continue  # the public face re-exports; its subpackages are lazy attributes
        for target in _imports(path):
            a, b = _part(here), _part(target)
            if a in JOBS and b in JOBS:
                continue  # jobs are peers: public names only (the test above)
            if a != b and b != "__init__" and LAYERS[b] >= LAYERS[a]:
                wrong.append(f"{here} imports {target} ({a}: layer {LAYERS[a]}, {b}: layer {LAYERS[b]})")
    assert not wrong, "\n".join(wrong)


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_subpackages_are_lazy_attributes_of_normgrad():
    code = ("import sys, normgrad as ng\n"
            "assert 'normgrad.nn' not in sys.modules and 'numba' not in sys.modules and 'torch' not in sys.modules\n"
            "print(ng.nn.BatchNorm1d.__name__, ng.autograd.Tensor.__name__, ng.kernels.backend())\n"
            "print('nn' in dir(ng), 'torch' in sys.modules)")
    assert _run(code).split() == ["BatchNorm1d", "Tensor", "numba", "True", "False"]
    import normgrad

    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        normgrad.nope


def test_kernels_are_not_compiled_at_import():
    code = ("from normgrad.kernels import _numba\n"
            "print(sorted(name for name in dir(_numba) if getattr(getattr(_numba, name), 'signatures', None)))")
    assert _run(code).strip() == "[]"


def test_normgrad_torch_loads_no_training_or_studies():
    pytest.importorskip("torch")
    code = ("import sys, normgrad.torch\n"
            "print(sorted(m for m in sys.modules if m.startswith(('normgrad.solver', 'normgrad.demo', "
            "'normgrad.bench', 'normgrad.studies', 'normgrad.data_parallel', "
            "'normgrad.classifiers', 'normgrad.nn', 'normgrad.diagnose', 'normgrad.training'))))")
    assert _run(code).strip() == "[]"
