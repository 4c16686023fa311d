"""PyTorch's own module tests' data (``torch.testing._internal.common_modules.module_db``)
run on normgrad.torch's norms against torch.nn's: each sample input x float32/float64 x
train/eval x default/random state, constructor -> state dict -> two forward/backward calls."""

from __future__ import annotations

import itertools

import torch

import normgrad.torch as nt

NAMES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm1d",
         "InstanceNorm2d", "InstanceNorm3d", "RMSNorm")


def infos():
    from torch.testing._internal.common_modules import module_db

    return [info for info in module_db if info.module_cls.__name__ in NAMES]


def cases():
    """(id, info, ours, dtype, training, random_state) for every combination."""
    out = []
    for info in infos():
        name = info.module_cls.__name__
        targets = [(name, getattr(nt, name))]
        if name.startswith("BatchNorm"):
            targets.append((f"SyncBatchNorm as {name}", nt.SyncBatchNorm))
        for (label, ours), dtype, training, random in itertools.product(
                targets, (torch.float32, torch.float64), (True, False), (False, True)):
            out.append((f"{label}-{str(dtype)[6:]}-{'train' if training else 'eval'}-{'random' if random else 'default'}",
                        info, ours, dtype, training, random))
    return out


def _randomize(module, gen):
    with torch.no_grad():
        for name, t in itertools.chain(module.named_parameters(), module.named_buffers()):
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) + (0.5 if "var" in name else -0.5))


def _clone(args):
    return [a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a for a in args]


def run_case(info, ours_cls, dtype, training, random) -> list[str]:
    """Every sample of ``info``; a list of the mismatches found (empty: all agree)."""
    problems = []
    gen = torch.Generator().manual_seed(0)
    samples = info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True, training=training)
    for k, sample in enumerate(samples):
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        theirs = info.module_cls(*args, **kwargs).to(dtype)
        if random:
            _randomize(theirs, gen)
        mine = ours_cls(*args, **kwargs).to(dtype)
        mine.load_state_dict(theirs.state_dict())
        theirs.train(training), mine.train(training)
        problems += [f"sample {k}: {p}" for p in _compare(theirs, mine, sample, dtype)]
    return problems


def _compare(theirs, mine, sample, dtype):
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-9}
    problems = []
    for call in range(2):
        a_in, b_in = _clone(sample.forward_input.args), _clone(sample.forward_input.args)
        try:
            a = theirs(*a_in, **sample.forward_input.kwargs)
        except Exception as err:  # torch refuses: ours must refuse too
            try:
                mine(*b_in, **sample.forward_input.kwargs)
            except Exception:
                return problems
            return problems + [f"torch refused ({type(err).__name__}: {err}), normgrad did not"]
        try:
            b = mine(*b_in, **sample.forward_input.kwargs)
        except Exception as err:
            return problems + [f"call {call}: {type(err).__name__}: {err}"]
        problems += _close(f"call {call} output", a, b, tol)
        if a.requires_grad and a.numel():
            g = torch.randn(a.shape, dtype=a.dtype, generator=torch.Generator().manual_seed(call))
            a.backward(g)
            b.backward(g.clone())
            for i, (x, y) in enumerate(zip(a_in, b_in)):
                if isinstance(x, torch.Tensor) and x.requires_grad:
                    problems += _close(f"call {call} input {i} grad", x.grad, y.grad, tol)
            for (name, p), q in zip(theirs.named_parameters(), mine.parameters()):
                problems += _close(f"call {call} {name}.grad", p.grad, q.grad, tol)
        for (name, t), u in zip(theirs.named_buffers(), mine.buffers()):
            problems += _close(f"call {call} buffer {name}", t, u, tol)
        if problems:
            return problems
    return problems


def _close(what, a, b, tol):
    if a is None and b is None:
        return []
    if (a is None) != (b is None):
        return [f"{what}: {'missing' if b is None else 'unexpected'}"]
    if a.shape != b.shape or a.dtype != b.dtype:
        return [f"{what}: shape/dtype {tuple(b.shape)} {b.dtype}, torch {tuple(a.shape)} {a.dtype}"]
    try:
        torch.testing.assert_close(b.detach(), a.detach(), equal_nan=True, **tol)
    except AssertionError as err:
        return [f"{what}: {str(err).splitlines()[0]}"]
    return []
