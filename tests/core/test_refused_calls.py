"""A call that refuses its input changes nothing: for every stateful norm module of
``normgrad.nn`` and ``normgrad.torch``, a refused forward (or backward) leaves every
parameter, buffer, counter and gradient bitwise as it was. Hand-picked hostile inputs
for each module, then hypothesis-generated wrong shapes on every module."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normgrad import NormSpec, nn
from normgrad.nn import distributed as nn_distributed

torch = pytest.importorskip("torch")
import normgrad.torch as nt  # noqa: E402

BATCH_RMS = NormSpec("batch_rms", features_last=False, across="batch", centered=False, running_stats=True)
NAN = float("nan")


def _nan(shape):
    x = np.random.default_rng(0).normal(size=shape)
    x.flat[-1] = NAN
    return x


# name -> (module factory, input rank, channels, {case: bad input})
NN_MODULES = {
    "BatchNorm1d": (lambda: nn.BatchNorm1d(3), 2, 3),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(3), 4, 3),
    "GroupNorm": (lambda: nn.GroupNorm(2, 4), 3, 4),
    "InstanceNorm1d": (lambda: nn.InstanceNorm1d(3, affine=True, track_running_stats=True), 3, 3),
    "InstanceNorm2d": (lambda: nn.InstanceNorm2d(3, affine=True, track_running_stats=True), 4, 3),
    "BatchRenorm1d": (lambda: nn.BatchRenorm1d(3), 2, 3),
    "BatchRenorm2d": (lambda: nn.BatchRenorm2d(3), 4, 3),
    "GhostBatchNorm1d": (lambda: nn.GhostBatchNorm1d(3, virtual_batch_size=4), 2, 3),
    "GhostBatchNorm2d": (lambda: nn.GhostBatchNorm2d(3, virtual_batch_size=4), 4, 3),
    "FrozenBatchNorm2d": (lambda: nn.FrozenBatchNorm2d(3), 4, 3),
    "Norm(batch_rms)": (lambda: nn.Norm(BATCH_RMS, 3), 3, 3),
    "SyncBatchNorm (one rank)": (lambda: nn_distributed.SyncBatchNorm(3), 3, 3),
}
TORCH_MODULES = {
    "BatchNorm1d": (lambda: nt.BatchNorm1d(3), 2, 3),
    "BatchNorm2d": (lambda: nt.BatchNorm2d(3), 4, 3),
    "BatchNorm3d": (lambda: nt.BatchNorm3d(3), 5, 3),
    "SyncBatchNorm (no process group)": (lambda: nt.SyncBatchNorm(3), 3, 3),
    "GroupNorm": (lambda: nt.GroupNorm(2, 4), 3, 4),
    "InstanceNorm1d": (lambda: nt.InstanceNorm1d(3, affine=True, track_running_stats=True), 3, 3),
    "InstanceNorm2d": (lambda: nt.InstanceNorm2d(3, affine=True, track_running_stats=True), 4, 3),
    "BatchRenorm1d": (lambda: nt.BatchRenorm1d(3), 2, 3),
    "BatchRenorm2d": (lambda: nt.BatchRenorm2d(3), 4, 3),
    "GhostBatchNorm1d": (lambda: nt.GhostBatchNorm1d(3, virtual_batch_size=4), 2, 3),
    "GhostBatchNorm2d": (lambda: nt.GhostBatchNorm2d(3, virtual_batch_size=4), 4, 3),
    "Norm(batch_rms)": (lambda: nt.Norm(BATCH_RMS, 3), 3, 3),
}


def _shape(rank, C, N=6, wrong_channels=False):
    return (N, C + 1 if wrong_channels else C, *(3,) * (rank - 2))


def _bad_inputs(rank, C):
    """Inputs every module above must refuse in training."""
    cases = {
        "wrong channel count": np.ones(_shape(rank, C, wrong_channels=True)),
        "one-dimensional": np.ones(7),
        "one value per channel": np.ones(_shape(rank, C, N=1)) if rank == 2 else None,
        "integer data": np.ones(_shape(rank, C), dtype=np.int64),
    }
    return {k: v for k, v in cases.items() if v is not None}


def _nn_state(module):
    state = {k: np.array(v, copy=True) for k, v in module.state_dict().items()}
    state.update({f"grad:{k}": np.array(v, copy=True) for k, v in module.grads.items()})
    return state


def _assert_nn_unchanged(before, module):
    after = _nn_state(module)
    assert before.keys() == after.keys()
    for key in before:
        assert before[key].dtype == after[key].dtype and np.array_equal(before[key], after[key], equal_nan=True), key


def _warm_nn(module, rank, C):
    """One accepted training step first, so gradients and saved state exist."""
    x = np.random.default_rng(1).normal(size=_shape(rank, C))
    y = module.forward(x)
    if not isinstance(module, nn.FrozenBatchNorm2d):
        module.backward(np.random.default_rng(2).normal(size=y.shape))


@pytest.mark.parametrize("name", list(NN_MODULES))
def test_nn_refused_forward_and_backward_change_nothing(name):
    make, rank, C = NN_MODULES[name]
    module = make()
    _warm_nn(module, rank, C)
    cases = {**_bad_inputs(rank, C), "NaN": _nan(_shape(rank, C))}
    if "Ghost" in name:
        cases["last chunk of one row"] = np.ones((5, 3) if rank == 2 else (5, 3, 1, 1))
        cases["NaN in the second chunk"] = _nan(_shape(rank, C, N=8))
    if "Instance" in name:
        cases["one spatial element"] = np.ones((4, C) + (1,) * (rank - 2))
    for case, x in cases.items():
        before = _nn_state(module)
        with pytest.raises((ValueError, TypeError)):
            module.forward(x)
            pytest.fail(f"{case}: not refused")
        _assert_nn_unchanged(before, module)
    if not isinstance(module, nn.FrozenBatchNorm2d):
        y = module.forward(np.random.default_rng(3).normal(size=_shape(rank, C)))
        module.backward(np.ones(y.shape))
        before = _nn_state(module)
        with pytest.raises((ValueError, TypeError)):
            module.backward(np.ones((y.shape[0] + 1, *y.shape[1:])))
        _assert_nn_unchanged(before, module)


def _torch_state(module):
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    state.update({f"grad:{k}": p.grad.clone() for k, p in module.named_parameters() if p.grad is not None})
    return state


def _assert_torch_unchanged(before, module):
    after = _torch_state(module)
    assert before.keys() == after.keys()
    for key in before:
        assert before[key].dtype == after[key].dtype and torch.equal(before[key], after[key]), key


@pytest.mark.parametrize("name", list(TORCH_MODULES))
def test_torch_refused_forward_changes_nothing(name):
    make, rank, C = TORCH_MODULES[name]
    module = make()
    module(torch.randn(_shape(rank, C))).sum().backward()
    cases = {k: torch.from_numpy(v) for k, v in _bad_inputs(rank, C).items()}
    if "Ghost" in name:
        cases["last chunk of one row"] = torch.ones((5, 3) if rank == 2 else (5, 3, 1, 1))
    if "Instance" in name:
        cases["one spatial element"] = torch.ones((4, C) + (1,) * (rank - 2))
    for case, x in cases.items():
        before = _torch_state(module)
        with pytest.raises((ValueError, TypeError, RuntimeError)):
            module(x)
            pytest.fail(f"{case}: not refused")
        _assert_torch_unchanged(before, module)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(which=st.sampled_from(sorted(NN_MODULES)), shape=st.lists(st.integers(0, 5), min_size=0, max_size=5),
       front=st.sampled_from(["nn", "torch"]))
def test_any_refused_shape_changes_nothing(which, shape, front):
    """Generated shapes: whatever a module refuses, it refuses before changing anything."""
    table = NN_MODULES if front == "nn" else TORCH_MODULES
    if which not in table:
        return
    make, rank, C = table[which]
    module = copy.deepcopy(make())
    x = np.random.default_rng(4).normal(size=shape)
    if front == "nn":
        before = _nn_state(module)
        try:
            module.forward(x)
        except (ValueError, TypeError):
            _assert_nn_unchanged(before, module)
        return
    before = _torch_state(module)
    try:
        module(torch.from_numpy(x))
    except (ValueError, TypeError, RuntimeError):
        _assert_torch_unchanged(before, module)
