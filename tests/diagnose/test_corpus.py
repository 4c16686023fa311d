"""normgrad check on a corpus of student-style files (tests/diagnose/corpus): correct ones
in several styles and starter conventions, unfinished ones, and real mistakes. The
verdicts are in corpus/expected.toml: no false alarm, no missed bug, every mistake named."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from normgrad import diagnose
from normgrad.diagnose import loader, probe

CORPUS = Path(__file__).parent / "corpus"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text())


def _check_in_process(path: Path, strict: bool = False):
    loaded = loader.load(path, probe.describe_exception)
    return diagnose.check(loaded.namespace, strict=strict)


def _parse(verdict: str) -> tuple[str, set[str]]:
    outcome, _, ids = verdict.partition(":")
    return outcome.strip(), {i.strip() for i in ids.split(",") if i.strip()}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_verdicts(name):
    report = _check_in_process(CORPUS / name)
    assert {f.name for f in report.functions} == set(EXPECTED[name]), name
    for function, verdict in EXPECTED[name].items():
        outcome, ids = _parse(verdict)
        got = report[function]
        assert got.outcome == outcome, (name, function, got.to_json())
        assert ids <= {d.id for d in got.diagnoses}, (name, function, got.to_json())
        if outcome == "ok":
            assert not got.diagnoses, (name, function, got.to_json())
    for got in report.functions:  # notes never contradict verdicts: a forward blamed is a forward called wrong
        for note in got.notes:
            if "fix the forward" in note:
                forward = probe.FORWARD_OF[got.name]
                assert forward in note and report[forward].outcome == "wrong", (name, got.name, note)
            if "your forward is right" in note:
                assert report[probe.FORWARD_OF[got.name]].ok, (name, got.name, note)


def test_every_catalog_id_is_named_by_some_corpus_file():
    named = {"not-implemented"} | {i for functions in EXPECTED.values() for v in functions.values()
                                   for i in _parse(v)[1]}
    from tests.diagnose.test_check import BUGS  # the one-edit bugs of correct_staged.py name the rest

    named |= {"dgamma-uses-x"} | {i for _, want in BUGS.values() for ids in want.values()
                                   if isinstance(ids, set) for i in ids}
    assert named == set(diagnose.CATALOG), sorted(set(diagnose.CATALOG) ^ named)


def test_summary_and_exit_codes_count_outcomes():
    report = _check_in_process(CORPUS / "partly_done.py")
    assert report.summary() == "1 ok, 4 not implemented yet, 1 not checked"
    assert report.exit_code == 0
    assert _check_in_process(CORPUS / "partly_done.py", strict=True).exit_code == 1
    wrong = _check_in_process(CORPUS / "bug_spatial_reshape.py")
    assert wrong.summary() == "3 ok, 1 wrong" and wrong.exit_code == 1


def test_unfinished_functions_say_what_is_left():
    report = _check_in_process(CORPUS / "partly_done.py")
    spatial = report["spatial_batchnorm_forward"]
    assert [d.detail for d in spatial.diagnoses] == ["still to write: test out"]
    assert "layernorm_forward" in " ".join(report["layernorm_backward"].notes)
    assert report["batchnorm_backward_alt"].diagnoses[0].detail == "still to write: dx"


def test_keepdims_shapes_are_ok_with_a_note_and_wrong_when_strict():
    report = _check_in_process(CORPUS / "correct_keepdims_list.py")
    forward, backward = report["batchnorm_forward"], report["batchnorm_backward_alt"]
    assert forward.ok and any("running_mean has shape (1, 4) where the notebook expects (4,)" in n for n in forward.notes)
    assert backward.ok and any("dgamma has shape (1, 4) where the notebook expects (4,)" in n and "Solver's update" in n for n in backward.notes)
    strict = _check_in_process(CORPUS / "correct_keepdims_list.py", strict=True)
    assert {d.id for d in strict["batchnorm_backward_alt"].diagnoses} == {"wrong-shape"}
    assert strict.exit_code == 1


def test_group_norm_gamma_in_either_documented_shape():
    c_shaped = _check_in_process(CORPUS / "correct_groupnorm_c.py")["spatial_groupnorm_forward"]
    assert c_shaped.ok and "gamma and beta were passed with shape (C,)" in c_shaped.notes
    four_d = _check_in_process(CORPUS / "correct_2024_tuple.py")["spatial_groupnorm_backward"]
    assert four_d.ok and "gamma and beta were passed with shape (1, C, 1, 1)" in four_d.notes


def test_a_crash_is_localized_to_its_case():
    f = _check_in_process(CORPUS / "bug_groupnorm_dims.py")["spatial_groupnorm_backward"]
    assert f.status == "error" and f.exception["type"] == "IndexError"
    assert f.exception["when"] == "N = 2, C = 2, H = 1, W = 1, G = 1"
    assert f.exception["file"].endswith("bug_groupnorm_dims.py") and f.exception["line"] == 21


def test_backward_compared_with_the_numeric_gradient_of_the_users_own_forward():
    report = _check_in_process(CORPUS / "bug_consistent_unbiased.py")
    backward = report["batchnorm_backward"]
    assert backward.ok and not backward.diagnoses
    assert any("your backward is right for your forward" in n and "fix the forward: batchnorm_forward" in n
               for n in backward.notes), backward.notes
    raw_x = _check_in_process(CORPUS / "bug_layernorm_raw_x.py")["layernorm_backward"]
    assert any("your forward is right" in n for n in raw_x.notes), raw_x.notes
    assert not any("fix the forward" in n for n in raw_x.notes)  # notes never contradict verdicts


def test_a_ones_start_for_running_statistics_is_only_a_note(tmp_path):
    source = (CORPUS / "_bn_base.py").read_text().replace(
        'bn_param.get("running_var", np.zeros(D, dtype=x.dtype))', 'bn_param.get("running_var", np.ones(D))')
    path = tmp_path / "ones.py"
    path.write_text(source)
    f = _check_in_process(path)["batchnorm_forward"]
    assert f.ok and any("starts at ones" in n for n in f.notes)


def test_corpus_files_through_the_command_line_path():
    """The same verdicts from check_file (child processes, timeouts) as in-process."""
    for name in ("correct_2024_tuple.py", "partly_done.py", "bug_spatial_reshape.py"):
        report = diagnose.check_file(CORPUS / name, timeout=20)
        for function, verdict in EXPECTED[name].items():
            assert report[function].outcome == _parse(verdict)[0], (name, function)


def test_reshape_without_transpose_is_seen_in_the_output_itself():
    report = _check_in_process(CORPUS / "bug_spatial_reshape.py")
    forward = {d.id: d.detail for d in report["spatial_batchnorm_forward"].diagnoses}
    backward = {d.id: d.detail for d in report["spatial_batchnorm_backward"].diagnoses}
    assert forward["reshape-without-transpose"] == "out matches this mistake on every case"
    assert backward == {}  # its backward undoes the same reshape: right for that forward
    assert any("fix the forward" in n for n in report["spatial_batchnorm_backward"].notes)
