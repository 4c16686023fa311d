"""Every fix in the catalogue is tested for what it says: its code, applied to a real-style
file with that mistake, makes the function right. In a fix, "`A`, not `B`" says: the
mistaken code has B, write A (so advice reversed into recommending the bug fails here)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from normgrad import diagnose
from normgrad.diagnose import loader, probe
from tests.diagnose.test_check import BUGS, CORRECT, DGAMMA_USES_X

CORPUS = Path(__file__).parent / "corpus"
BASE = (CORPUS / "_bn_base.py").read_text()
PAIR = re.compile(r"`([^`]+)`,? not `([^`]+)`")


def _base(old, new):
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def _bug(name):
    source = CORRECT
    for old, new, _ in BUGS[name][0]:
        source = source.replace(old, new)
    return source


def _corpus(name):
    return (CORPUS / name).read_text()


# id -> (a file with that mistake, the function it is in, how the fix applies): "pairs" (each
# "`A`, not `B`" of the fix whose B is in the function), ("replace", text, template with {do}:
# the fix's first code), ("before", text: the fix's first code goes on the line before it)
FIXES = {
    "unbiased-variance": (_base("x.var(axis=0)", "x.var(axis=0, ddof=1)"), "batchnorm_forward", "pairs"),
    "running-var-unbiased": (_base("momentum * running_var + (1 - momentum) * var",
                                   "momentum * running_var + (1 - momentum) * var * N / (N - 1)"),
                             "batchnorm_forward", "pairs"),
    "std-of-variance": (_corpus("bug_std_of_variance.py"), "batchnorm_forward", "pairs"),
    "running-stats-init": (_corpus("bug_running_init.py"), "batchnorm_forward", "pairs"),
    "running-stats-scalar": (_corpus("bug_running_scalar.py"), "batchnorm_forward", "pairs"),
    "missing-mean-path": (_bug("missing_mean_path"), "batchnorm_backward",
                          ("replace", "return dx1, dgamma, dbeta", "{do}\n    return dx, dgamma, dbeta")),
    "missing-variance-path": (_bug("missing_variance_path"), "batchnorm_backward",
                              ("replace", "return dx1 + dx2, dgamma, dbeta", "{do}\n    return dx, dgamma, dbeta")),
    "missing-gamma-in-dx": (_corpus("bug_missing_gamma_in_dx.py"), "batchnorm_backward_alt", "pairs"),
    "gamma-outside-sums": (_corpus("bug_layernorm_gamma_outside.py"), "layernorm_backward",
                           ("replace", "dx = gamma / (D * np.sqrt(var + eps)) * (D * dout - np.sum(dout, axis=1, "
                                       "keepdims=True)\n                                              - xhat * "
                                       "np.sum(dout * xhat, axis=1, keepdims=True))", "{do}")),
    "variance-path-uncentred": (_corpus("bug_variance_path_uncentred.py"), "batchnorm_backward_alt", "pairs"),
    "wrong-axis": (_bug("wrong_axis_layernorm"), "layernorm_forward", "pairs"),
    "not-centred": (_corpus("bug_layernorm_not_centred.py"), "layernorm_forward", "pairs"),
    "variance-not-centred": (_corpus("bug_variance_not_centred.py"), "batchnorm_forward", "pairs"),
    "groups-of-size-G": (_corpus("bug_groupnorm_groups_of_G.py"), "spatial_groupnorm_forward", "pairs"),
    "gamma-beta-mapping": (_corpus("bug_groupnorm_gamma_tile.py"), "spatial_groupnorm_forward", "pairs"),
    "values-misplaced": (_corpus("bug_spatial_swapaxes.py"), "spatial_batchnorm_forward", "pairs"),
    "reshape-without-transpose": (_corpus("bug_spatial_reshape.py"), "spatial_batchnorm_forward", "pairs"),
    "eps-outside-sqrt": (_bug("eps_outside_sqrt"), "batchnorm_forward", "pairs"),
    "eps-missing": (_corpus("bug_eps_missing.py"), "batchnorm_forward", "pairs"),
    "drops-affine": (_corpus("bug_drops_affine.py"), "batchnorm_forward", "pairs"),
    "eps-value": (_corpus("bug_eps_constant.py"), "batchnorm_forward", "pairs"),
    "momentum-reversed": (_bug("momentum_reversed"), "batchnorm_forward", "pairs"),
    "no-running-update": (_base('    bn_param["running_mean"] = running_mean\n    bn_param["running_var"] = running_var\n',
                                ""), "batchnorm_forward", ("before", "    return out, cache")),
    "test-uses-batch-stats": (_bug("test_uses_batch_stats"), "batchnorm_forward", "pairs"),
    "test-drops-affine": (_corpus("bug_test_drops_affine.py"), "batchnorm_forward", "pairs"),
    "test-divides-by-var": (_corpus("bug_test_divides_by_var.py"), "batchnorm_forward", "pairs"),
    "test-beta-sign": (_corpus("bug_test_beta_sign.py"), "batchnorm_forward", "pairs"),
    "dgamma-not-summed": (_bug("dgamma_not_summed"), "batchnorm_backward", "pairs"),
    "dbeta-not-summed": (_bug("dbeta_not_summed"), "batchnorm_backward", "pairs"),
    "dgamma-uses-x": (DGAMMA_USES_X, "layernorm_backward", "pairs"),
    "extra-dimensions": (_corpus("bug_groupnorm_7d.py"), "spatial_groupnorm_forward", "pairs"),
    "inputs-modified": (_bug("inputs_modified"), "batchnorm_forward", "pairs"),
}
TEXT_ONLY = {  # fixes that are advice, not code: what they must say
    "not-implemented": ("fill in", "TODO"),
    "wrong-shape": ("out and dx have x's shape", "dgamma and dbeta have gamma's shape"),
}


def _check(tmp_path, source, name):
    shutil.copy(CORPUS / "_bn_base.py", tmp_path / "_bn_base.py")  # some files import it
    path = tmp_path / name
    path.write_text(source)
    return diagnose.check(loader.load(path, probe.describe_exception).namespace)


def _function_span(source, function):
    start = source.index(f"def {function}(")
    end = source.find("\ndef ", start + 1)
    return start, len(source) if end < 0 else end


def _apply(source, function, fix, how):
    start, end = _function_span(source, function)
    body = source[start:end]
    first = re.search(r"`([^`]+)`", fix).group(1)
    if how == "pairs":
        pairs = [(do, dont) for do, dont in PAIR.findall(fix) if dont in body]
        assert pairs, f"the fix names none of the code the mistaken {function} has: {fix}"
        for do, dont in pairs:
            body = body.replace(dont, do)
    elif how[0] == "replace":
        assert how[1] in body
        body = body.replace(how[1], how[2].format(do=first))
    else:
        assert how[1] in body
        body = body.replace(how[1], f"    {first}\n{how[1]}")
    return source[:start] + body + source[end:]


def test_every_catalog_entry_has_its_fix_tested():
    assert set(FIXES) | set(TEXT_ONLY) == set(diagnose.CATALOG)


@pytest.mark.parametrize("id_", sorted(FIXES))
def test_the_fix_text_fixes_the_mistake(tmp_path, id_):
    source, function, how = FIXES[id_]
    before = _check(tmp_path, source, "mistake.py")[function]
    assert not before.ok and id_ in {d.id for d in before.diagnoses}, before.to_json()
    fixed = _apply(source, function, diagnose.CATALOG[id_][1], how)
    after = _check(tmp_path, fixed, "fixed.py")[function]
    assert after.ok, (id_, after.to_json())


@pytest.mark.parametrize("id_", sorted(TEXT_ONLY))
def test_advice_fixes_say_what_they_mean(id_):
    for phrase in TEXT_ONLY[id_]:
        assert phrase in diagnose.CATALOG[id_][1]


def test_a_reversed_fix_fails_this_check():
    """The issue's example: the eps fix turned into advice that recommends the bug."""
    source, function, how = FIXES["eps-outside-sqrt"]
    reversed_fix = "normalize by `np.sqrt(var) + eps`, not `np.sqrt(var + eps)`"
    with pytest.raises(AssertionError, match="names none of the code"):
        _apply(source, function, reversed_fix, how)
