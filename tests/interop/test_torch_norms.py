"""normgrad.torch's LayerNorm, GroupNorm, InstanceNorm1d/2d, RMSNorm, BatchRenorm and
GhostBatchNorm against torch (or references in torch ops), on both implementations,
under torch.compile; convert_norms; revert_sync_batchnorm."""

from __future__ import annotations

import copy

import pytest
import torch

import normgrad.torch as nt
from normgrad.torch import ops
from tests.nn.test_toolbox_modules import TorchGhost, TorchRenorm


@pytest.fixture(params=[False, True], ids=["kernels", "torch-ops"])
def path(request):
    ops.FORCE_TORCH_OPS = request.param
    torch._dynamo.reset()
    yield request.param
    ops.FORCE_TORCH_OPS = False


CASES = {  # name: (normgrad module, torch module, input shape)
    "layer": (lambda: nt.LayerNorm(6), lambda: torch.nn.LayerNorm(6), (4, 3, 6)),
    "layer 2-d shape, no bias": (lambda: nt.LayerNorm((3, 4), bias=False), lambda: torch.nn.LayerNorm((3, 4), bias=False),
                                 (5, 3, 4)),
    "group": (lambda: nt.GroupNorm(3, 6), lambda: torch.nn.GroupNorm(3, 6), (4, 6, 5)),
    "group no affine": (lambda: nt.GroupNorm(2, 4, affine=False), lambda: torch.nn.GroupNorm(2, 4, affine=False),
                        (3, 4, 2, 3)),
    "rms": (lambda: nt.RMSNorm(6), lambda: torch.nn.RMSNorm(6), (4, 6)),
    "rms eps": (lambda: nt.RMSNorm((2, 3), eps=1e-4), lambda: torch.nn.RMSNorm((2, 3), eps=1e-4), (4, 5, 2, 3)),
    "instance1d": (lambda: nt.InstanceNorm1d(4), lambda: torch.nn.InstanceNorm1d(4), (3, 4, 7)),
    "instance2d affine tracked": (lambda: nt.InstanceNorm2d(4, affine=True, track_running_stats=True),
                                  lambda: torch.nn.InstanceNorm2d(4, affine=True, track_running_stats=True),
                                  (3, 4, 3, 5)),
    "instance1d unbatched": (lambda: nt.InstanceNorm1d(4, affine=True), lambda: torch.nn.InstanceNorm1d(4, affine=True),
                             (4, 9)),
    "renorm": (lambda: nt.BatchRenorm1d(4, rmax=1.3, dmax=0.4, momentum=0.3),
               lambda: TorchRenorm(4, 1.3, 0.4, momentum=0.3), (10, 4)),
    "renorm2d": (lambda: nt.BatchRenorm2d(4, rmax=1.3, dmax=0.4), lambda: TorchRenorm(4, 1.3, 0.4), (5, 4, 2, 3)),
    "ghost": (lambda: nt.GhostBatchNorm1d(4, virtual_batch_size=4), lambda: TorchGhost(4, 4), (11, 4)),
    "ghost2d": (lambda: nt.GhostBatchNorm2d(4, virtual_batch_size=2), lambda: TorchGhost(4, 2), (6, 4, 2, 2)),
}


def _pair(case, dtype):
    torch.manual_seed(0)
    ours, theirs = CASES[case][0]().to(dtype), CASES[case][1]().to(dtype)
    with torch.no_grad():
        for p in theirs.parameters():
            p.uniform_(0.5, 1.5)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", list(CASES))
def test_equals_torch_over_steps(path, case, dtype):
    ours, theirs = _pair(case, dtype)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    g = torch.Generator().manual_seed(1)
    for step in range(4):
        training = step < 3
        ours.train(training), theirs.train(training)
        x = (torch.randn(CASES[case][2], generator=g, dtype=dtype) * 2 + 0.5 * step).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        dy = torch.randn(x.shape, generator=g, dtype=dtype)
        ya, yb = ours(x), theirs(x2)
        (ya * dy).sum().backward()
        (yb * dy).sum().backward()
        torch.testing.assert_close(ya, yb, **tol)
        torch.testing.assert_close(x.grad, x2.grad, **tol)
        for (name, pa), pb in zip(ours.named_parameters(), theirs.parameters()):
            torch.testing.assert_close(pa.grad, pb.grad, **tol, msg=name)
            pa.grad = pb.grad = None
        for (name, a), b in zip(ours.named_buffers(), theirs.buffers()):
            torch.testing.assert_close(a.double(), b.double(), **tol, msg=name)
    assert set(ours.state_dict()) == set(theirs.state_dict())


@pytest.mark.parametrize("case", ["layer", "group", "rms", "instance2d affine tracked", "renorm", "ghost"])
def test_compiles_fullgraph(case):
    ours, _ = _pair(case, torch.float32)
    twin = copy.deepcopy(ours)
    x = torch.randn(CASES[case][2]) + 1
    compiled = torch.compile(twin, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), ours(x), rtol=1e-5, atol=1e-5)
    for a, b in zip(twin.buffers(), ours.buffers()):
        torch.testing.assert_close(a, b)


def test_convert_norms_swaps_every_kind_and_shares_parameters():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.GroupNorm(2, 4),
                                torch.nn.InstanceNorm2d(4, affine=True), torch.nn.Flatten(),
                                torch.nn.Sequential(torch.nn.LayerNorm(4 * 4 * 4), torch.nn.RMSNorm(64)))
    x = torch.randn(2, 3, 6, 6)
    want = model(x)
    converted = nt.convert_norms(model)
    kinds = [type(m) for m in converted.modules()]
    for cls in (nt.BatchNorm2d, nt.GroupNorm, nt.InstanceNorm2d, nt.LayerNorm, nt.RMSNorm):
        assert cls in kinds
    assert converted[1].weight is model[1].weight and converted[5][0].bias is model[5][0].bias
    torch.testing.assert_close(converted(x), want, rtol=1e-5, atol=1e-5)


def _trained_eval(model, shape):
    model(torch.randn(shape))  # running statistics away from their defaults
    return model.eval()


def _check_reverted(reverted, model, x, kinds):
    assert not any(isinstance(m, (torch.nn.SyncBatchNorm, nt.SyncBatchNorm)) for m in reverted.modules())
    assert [type(m) for m in reverted.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)] == kinds
    assert not reverted.training
    torch.testing.assert_close(reverted(x), model(x))
    for k, a in model.state_dict().items():
        torch.testing.assert_close(reverted.state_dict()[k], a)
    torch.export.export(reverted, (x,))  # runs and exports in one process


def test_revert_normgrad_sync_batchnorm_follows_each_layers_rank():
    model = _trained_eval(torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4, momentum=0.3), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(16, 5), torch.nn.BatchNorm1d(5)), (8, 3, 4, 4))
    synced = nt.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
    state = copy.deepcopy(model.state_dict())
    synced.train()(torch.randn(4, 3, 4, 4))  # a forward records each layer's input rank
    synced.load_state_dict(state)
    reverted = nt.revert_sync_batchnorm(synced.eval())
    _check_reverted(reverted, model, torch.randn(3, 3, 4, 4), [nt.BatchNorm2d, nt.BatchNorm1d])


def test_revert_torch_sync_batchnorm():
    conv = _trained_eval(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                             torch.nn.BatchNorm2d(4)), (8, 3, 5, 5))
    reverted = nt.revert_sync_batchnorm(torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(conv)))
    _check_reverted(reverted, conv, torch.randn(2, 3, 5, 5), [nt.BatchNorm, nt.BatchNorm])  # rank unknown
    mlp = _trained_eval(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)), (8, 3))
    reverted = nt.revert_sync_batchnorm(torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(mlp)),
                                        kind=nt.BatchNorm1d)  # torch's layers never saw an input here
    _check_reverted(reverted, mlp, torch.randn(2, 3), [nt.BatchNorm1d])


BAD = {
    "layer shape": (lambda: nt.LayerNorm(4)(torch.randn(3, 5)), ValueError, r"\(\.\.\., 4\)"),
    "group channels": (lambda: nt.GroupNorm(2, 4)(torch.randn(3, 6, 2)), ValueError, r"\(N, 4, \.\.\.\)"),
    "group divides": (lambda: nt.GroupNorm(3, 4), ValueError, "divisible"),
    "rmax": (lambda: nt.BatchRenorm1d(4, rmax=0.5), ValueError, "rmax"),
    "dmax": (lambda: nt.BatchRenorm2d(4, dmax=-1), ValueError, "dmax"),
    "virtual batch": (lambda: nt.GhostBatchNorm1d(4, virtual_batch_size=1), ValueError, "virtual_batch_size"),
    "virtual batch type": (lambda: nt.GhostBatchNorm1d(4, virtual_batch_size=2.0), TypeError, "virtual_batch_size"),
    "ghost chunk of one": (lambda: nt.GhostBatchNorm1d(4, virtual_batch_size=3)(torch.randn(7, 4)), ValueError,
                           "last chunk of 1 row"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused(path, case):
    call, error, message = BAD[case]
    with pytest.raises(error, match=message):
        call()
