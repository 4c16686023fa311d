"""The documentation: every example on README.md and docs/ runs, with the output a page
shows; the site builds strictly; every link and image of the built site and of the demo's
report resolves; the pictures the library makes are current.

Conventions of the pages (docs/index.md says them to writers):
- every ```python block runs; the blocks of one page share a namespace, in page order, in a
  temporary working folder;
- an ```output block right after a runnable block is what it prints (doctest's rules:
  ``...`` matches anything, runs of whitespace are one space); an ```output block
  anywhere else is an error, so no page shows output that is not checked;
- a ```bash block of one command, ``.venv/bin/normgrad check|graph ...`` or
  ``.venv/bin/python examples/NAME.py``, followed by ```output is run and compared too.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import re
import shlex
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.M | re.S)
COMMAND = re.compile(r"^\.venv/bin/(normgrad (check|graph) |python examples/)")
CHECKER = doctest.OutputChecker()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def blocks(text: str) -> list[dict]:
    """Fenced blocks of a page: lang, body (dedented), line, and the text before the next block."""
    found = []
    for m in FENCE.finditer(text):
        indent = len(m.group("indent"))
        body = "".join(line[indent:] if line[:indent].strip() == "" else line
                       for line in m.group("body").splitlines(keepends=True))
        found.append(dict(lang=m.group("lang"), body=body, line=text.count("\n", 0, m.start()) + 1,
                          start=m.start(), end=m.end()))
    for a, b in zip(found, found[1:]):
        a["followed_by"] = b if not text[a["end"]:b["start"]].strip() else None
    if found:
        found[-1]["followed_by"] = None
    return found


def runnable(block: dict) -> bool:
    return block["lang"] == "python" or (block["lang"] == "bash" and len(block["body"].strip().splitlines()) == 1
                                         and bool(COMMAND.match(block["body"].strip())))


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def expect(want: str, got: str, where: str) -> None:
    assert CHECKER.check_output(want, got, FLAGS), (
        f"{where}: the page shows\n{want}\nbut the example printed\n{got}")


def run_command(command: str, cwd: Path) -> str:
    """A page's shell command, run from ``cwd`` (with examples/ and tests/ reachable there)."""
    argv = shlex.split(command)
    bindir = Path(sys.executable).parent
    argv[0] = str(bindir / Path(argv[0]).name) if argv[0].startswith(".venv/bin/") else argv[0]
    if Path(argv[0]).name == "python":
        argv[0] = sys.executable
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    return result.stdout or f"[exit {result.returncode}, no output]\n{result.stderr[-2000:]}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_page_examples_run_and_print_what_the_page_shows(page, tmp_path, monkeypatch):
    found = blocks(page.read_text(encoding="utf-8"))
    for name in ("examples", "tests"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    for block in found:
        where = f"{page_id(page)}:{block['line']}"
        if block["lang"] == "output":
            continue
        if not runnable(block):
            assert not (block["followed_by"] and block["followed_by"]["lang"] == "output"), (
                f"{where}: an output block follows a block that is not run ({block['lang'] or 'plain'})")
            continue
        if block["lang"] == "python":
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(block["body"], where, "exec"), namespace)
            got = printed.getvalue()
        else:
            got = run_command(block["body"].strip(), tmp_path)
        if block["followed_by"] and block["followed_by"]["lang"] == "output":
            expect(block["followed_by"]["body"], got, where)


def test_every_output_block_is_checked():
    """An ```output block that no runnable block precedes would be an unchecked claim."""
    for page in PAGES:
        found = blocks(page.read_text(encoding="utf-8"))
        checked = {id(b["followed_by"]) for b in found if runnable(b) and b["followed_by"]}
        for block in found:
            if block["lang"] == "output":
                assert id(block) in checked, f"{page_id(page)}:{block['line']}: output block of no runnable block"


def test_the_harness_catches_a_wrong_output(tmp_path, monkeypatch):
    """What a page claims is compared: a block printing something else fails."""
    page = "```python\nprint(1 + 1)\n```\n\n```output\n3\n```\n"
    block = blocks(page)[0]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(block["body"], {})
    with pytest.raises(AssertionError, match="the page shows"):
        expect(block["followed_by"]["body"], printed.getvalue(), "test")
    expect("2\n", printed.getvalue(), "test")


# --- the site ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The site, built as ``./run.sh docs`` builds it (strict), into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"site built in {time.perf_counter() - started:.1f} s")
    return out


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            if attrs.get(key) and not (tag == "link" and attrs.get("rel") in ("preconnect", "dns-prefetch")):
                self.links.append((tag, attrs[key]))


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def broken_links(pages: list[Path], root: Path) -> list[str]:
    """Every local href/src of ``pages`` that names no file under ``root`` (or no id in it)."""
    parsed, broken = {}, []
    for page in pages:
        for tag, link in _parse(page).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or root.resolve() not in target.parents:
                broken.append(f"{page.relative_to(root)}: <{tag}> {link} (no such file)")
                continue
            if parts.fragment and target.suffix == ".html":
                if target not in parsed:
                    parsed[target] = _parse(target).ids
                if unquote(parts.fragment) not in parsed[target]:
                    broken.append(f"{page.relative_to(root)}: <{tag}> {link} (no such anchor)")
    return broken


def test_site_builds_strictly_and_every_link_and_image_resolves(site):
    # 404.html is served by a web server for any missing address, so its links are absolute
    # (from the server's root); every other page links relatively and is checked
    pages = sorted(p for p in site.rglob("*.html") if p.name != "404.html")
    names = {str(p.relative_to(site)) for p in pages}
    for wanted in ("index.html", "getting-started.html", "tutorials/batchnorm-backward.html",
                   "reference/functional.html", "reference/core.html", "how-to/cs231n-notebooks.html"):
        assert wanted in names
    assert broken_links(pages, site) == []
    images = [link for page in pages for tag, link in _parse(page).links if tag == "img"]
    assert any(link.endswith("batchnorm-graph.png") for link in images)


def test_link_check_finds_a_broken_link(tmp_path):
    (tmp_path / "a.html").write_text('<a href="b.html#x">b</a><img src="gone.png"><a href="https://e.org/">e</a>')
    (tmp_path / "b.html").write_text('<h1 id="y">b</h1>')
    assert broken_links([tmp_path / "a.html"], tmp_path) == [
        "a.html: <a> b.html#x (no such anchor)", "a.html: <img> gone.png (no such file)"]


def test_api_reference_covers_every_public_module(site):
    text = {name: (site / "reference" / f"{name}.html").read_text(encoding="utf-8")
            for name in ("normgrad", "functional", "nn", "torch", "kernels", "autograd", "diagnose", "solver", "core")}
    for anchor in ('id="normgrad.batchnorm_forward"', 'id="normgrad.NormSpec"'):
        assert anchor in text["normgrad"]
    assert 'id="normgrad.functional.batchnorm_backward_alt"' in text["functional"]
    assert 'id="normgrad.nn.BatchNorm1d"' in text["nn"]
    assert 'id="normgrad.torch.SyncBatchNorm"' in text["torch"]
    assert 'id="normgrad.kernels.norm_forward"' in text["kernels"]
    assert 'id="normgrad.autograd.Tensor"' in text["autograd"]
    assert 'id="normgrad.diagnose.check"' in text["diagnose"]
    assert 'id="normgrad.solver.Solver"' in text["solver"]
    assert 'id="normgrad.core.specs.NormSpec"' in text["core"]
    # docstrings' "Inputs:" lists render as lists (docs/_griffe.py), with their shapes
    assert re.search(r"<li>\s*(<p>)?x: data of shape \(N, D\)", text["functional"])


# --- README ----------------------------------------------------------------------------

def test_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme):
        if not urlsplit(target).scheme:
            assert (ROOT / target).exists(), target
    for command in ("./run.sh demo", "./run.sh test", "./run.sh bench", "./run.sh docs"):
        assert command in readme


def test_docs_command_builds_the_site():
    run_sh = (ROOT / "run.sh").read_text()
    assert re.search(r"^\s*docs\)", run_sh, re.M) and "mkdocs" in run_sh and "--strict" in run_sh


def test_the_test_extra_builds_the_site_as_the_docs_extra_does():
    """./run.sh test builds the site with the versions ./run.sh docs installs, all pinned."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["docs"] and set(extras["docs"]) <= set(extras["test"])
    assert all("==" in requirement for requirement in extras["docs"])


# --- pictures ---------------------------------------------------------------------------

def test_graph_picture_is_current(tmp_path):
    """docs/batchnorm-graph.png is what ``normgrad graph --norm batch`` draws now."""
    import matplotlib.image as mpimg
    import numpy as np

    from normgrad.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["graph", "--norm", "batch", "--out", str(tmp_path / "g.png")]) == 0
    now, committed = mpimg.imread(tmp_path / "g.png"), mpimg.imread(ROOT / "docs" / "batchnorm-graph.png")
    assert now.shape == committed.shape, "redraw docs/batchnorm-graph.png: .venv/bin/normgrad graph --norm batch " \
                                         "--out docs/batchnorm-graph.png"
    assert np.abs(now - committed).mean() < 1e-3


# --- the demo's report ------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_report(tmp_path_factory) -> Path:
    from normgrad.cli import main

    out = tmp_path_factory.mktemp("demo") / "report"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["demo", "--quick", "--out", str(out), "--seed", "1"]) == 0
    return out


def test_demo_report_links_and_images_resolve(quick_report):
    report = quick_report / "report.html"
    assert broken_links([report], quick_report) == []
    images = [link for tag, link in _parse(report).links if tag == "img"]
    assert sorted(images) == ["activations.png", "batchnorm-graph.png", "curves.png"]


def test_demo_report_explains_with_the_runs_numbers(quick_report):
    import html
    import json

    page = html.unescape((quick_report / "report.html").read_text(encoding="utf-8"))
    runs = {r["label"]: r for r in json.loads((quick_report / "results.json").read_text())["runs"]}
    before = runs["no norm"]["activation_std"][0]
    assert (f"standard deviation of {before[0]:.2g} in layer 1 and {before[-1]:.2g} in layer {len(before)}"
            in page)
    bn_before = runs["batch norm"]["activation_std"][0]
    assert f"their std is {min(bn_before):.2f} to {max(bn_before):.2f}" in page
    # the per-layer table carries every layer's std before training
    for k, std in enumerate(before):
        assert re.search(rf"<td>layer {k + 1}</td><td>{re.escape(f'{std:.2g}')}</td>", page)
    # captions say what to look at
    assert page.count("Look at") >= 2
    # a smoke run says so, and shows no unreached target as a result
    assert "Smoke run (--quick)" in page and "(not reached)" not in page


def test_full_run_rows_still_say_not_reached():
    from normgrad.demo.report import table_rows
    from normgrad.demo.training import RunResult

    r = RunResult("no norm", None, [1.0] * 70, [], [], 0.5, 0.5, None, 0.1, 35)
    assert table_rows([r])[0][3] == "> 70 (not reached)"
    assert table_rows([r], quick=True)[0][3] == "-"
    from normgrad.demo.settings import Settings

    assert Settings().smoke is False and Settings.quick("mnist1d", 0).smoke is True


def _redraw_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_redraw_demo", ROOT / "docs" / "_redraw_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_figures_are_the_recorded_runs_drawn_now(tmp_path):
    """docs/demo-*.png are docs/demo/results.json drawn by the demo's plotting code as it is now."""
    import matplotlib.image as mpimg
    import numpy as np

    for name, path in _redraw_module().draw(tmp_path).items():
        now, committed = mpimg.imread(path), mpimg.imread(ROOT / "docs" / name)
        assert now.shape == committed.shape and np.abs(now - committed).mean() < 1e-3, \
            f"docs/{name} is not current: .venv/bin/python docs/_redraw_demo.py"


def test_pages_show_the_recorded_demo_table():
    """README.md and docs/getting-started.md show the rows of the run in docs/demo/results.json."""
    from normgrad.demo.report import table_rows

    settings, results = _redraw_module().load()
    for page in (ROOT / "README.md", ROOT / "docs" / "getting-started.md"):
        text = page.read_text(encoding="utf-8")
        for row in table_rows(results, settings.smoke):
            cells = [c.strip() for c in re.search(rf"│ {re.escape(row[0])} .*│", text).group(0).strip("│").split("│")]
            assert cells == list(row), f"{page.name}: {cells} != {list(row)}"
        plain = results[0].activation_std[0]
        assert f"from {plain[0]:.2f} in layer 1 to {plain[-1]:.3f} in layer {len(plain)}" in text, page.name


def test_study_figures_and_findings_are_the_recorded_runs(tmp_path):
    """docs/experiments/NAME.png is NAME.json's runs drawn by the studies' plotting code as it
    is now, and docs/tutorials/studies.md quotes every finding of the recorded runs."""
    import importlib.util
    import json

    import matplotlib.image as mpimg
    import numpy as np

    from normgrad.studies import STUDIES

    spec = importlib.util.spec_from_file_location("_redraw_studies", ROOT / "docs" / "_redraw_studies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    drawn = module.draw(tmp_path)
    assert sorted(drawn) == sorted(STUDIES)
    for name, path in drawn.items():
        now, committed = mpimg.imread(path), mpimg.imread(ROOT / "docs" / "experiments" / f"{name}.png")
        assert now.shape == committed.shape and np.abs(now - committed).mean() < 1e-3, \
            f"docs/experiments/{name}.png is not current: .venv/bin/python docs/_redraw_studies.py"
    page = " ".join((ROOT / "docs" / "tutorials" / "studies.md").read_text(encoding="utf-8").split())
    recorded = sorted((ROOT / "docs" / "experiments").glob("*.json"))
    assert {p.stem for p in recorded} >= set(STUDIES) | {"layernorm-vs-torch"}
    for path in recorded:
        for finding in json.loads(path.read_text())["findings"]:
            assert f"- {' '.join(finding.split())}" in page, f"{path.stem}: {finding}"


def test_docstrings_render_as_markdown_lists_and_code():
    """docs/_griffe.py: CS231n-style docstrings become Markdown lists and code blocks."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_griffe", ROOT / "docs" / "_griffe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "Formula:\n    dx = a - b\nInputs:\n- x: data of shape (N, D)\n  - eps: > 0\nReturns a tuple of:\n- out: (N, D)"
    assert module.markdown_lists(text).splitlines() == [
        "Formula:", "", "    dx = a - b", "Inputs:", "", "- x: data of shape (N, D)", "    - eps: > 0", "",
        "Returns a tuple of:", "", "- out: (N, D)"]
