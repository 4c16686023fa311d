"""normgrad.torch passes PyTorch's own module tests' cases: every sample input of
``module_db`` for each norm torch has (and SyncBatchNorm on batch norm's inputs), in
float32 and float64, training and evaluation, default and random state, two calls in a
row (momentum None's cumulative average), against torch.nn: outputs, running buffers,
input and parameter gradients; where torch refuses an input, normgrad refuses it too."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("expecttest")  # torch.testing._internal imports it

from .module_db_cases import cases, run_case  # noqa: E402

CASES = cases()


def test_every_norm_of_torch_is_covered():
    covered = {case[1].module_cls.__name__ for case in CASES}
    assert covered == {"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm1d",
                       "InstanceNorm2d", "InstanceNorm3d", "RMSNorm"}
    assert len(CASES) == 96


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_module_db_case(case):
    _, info, ours, dtype, training, random = case
    assert run_case(info, ours, dtype, training, random) == []
