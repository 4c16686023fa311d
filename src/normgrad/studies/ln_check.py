"""Is layer norm's place below no normalization in the demo the truth of that setting,
or a defect in normgrad's layer norm? The same nets, trained with PyTorch's layers.

Everything comes from the demo's own settings (``normgrad.demo.Settings``; ``--quick``
takes the demo's ``--quick`` ones): its MLP, data split, initial weights, L2 strength,
dropout, and its Solver (Adam, learning rate and its decay, batch size, epochs, batch
order). Each net is built once in normgrad and copied into an equivalent
``torch.nn.Sequential`` (``TorchTwin``: same initial weights); the Solver trains both
on the same batches, PyTorch's net computing its own forward, loss and gradients, so
the two runs differ only in the layers that compute them.

1. exactness: the first batch's gradients of every weight matrix, normgrad's against
   PyTorch's (float32), and, without dropout, how the two training-loss curves drift
   apart over the first epoch (rounding differences, amplified by training);
2. the ranking: with the demo's dropout (each library its own masks) and its epochs,
   layer norm and no normalization in each library, best validation accuracy.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from ..demo import Settings, build_model, load_data, solver_options
from ..outputs import atomic_write, save_figure
from ..solver import Solver

EXACT_STEPS = 100  # at most, in the no-dropout run (one epoch: 70 at the demo's size)


class TorchTwin:
    """A ``torch.nn`` copy of one of normgrad's ``FullyConnectedNet``s, as a Solver model:
    ``params`` in normgrad's names and layouts, ``loss(X, y=None)`` computed by PyTorch
    (cross-entropy plus the same L2 term, 0.5 * reg * sum W**2)."""

    def __init__(self, torch, model):
        self.torch, self.reg = torch, model.reg
        self.params = {name: value.copy() for name, value in model.params.items()}
        nn, layers, self.slots = torch.nn, [], {}
        depth = len([k for k in model.params if k.startswith("W")])
        for i in range(1, depth + 1):
            out_dim, in_dim = model.params[f"W{i}"].shape[::-1]
            lin = nn.Linear(in_dim, out_dim)
            layers.append(lin)
            self.slots.update({f"W{i}": lin.weight, f"b{i}": lin.bias})
            if i == depth:
                break
            if model.normalization == "layernorm":
                layers.append(nn.LayerNorm(out_dim))
                self.slots.update({f"gamma{i}": layers[-1].weight, f"beta{i}": layers[-1].bias})
            layers.append(nn.ReLU())
            if model.use_dropout:
                layers.append(nn.Dropout(1 - model.dropout_param["p"]))
        self.net = nn.Sequential(*layers)
        missing = set(self.params) - set(self.slots)
        if missing:
            raise ValueError(f"TorchTwin: no torch layer for {sorted(missing)} ({model.normalization})")

    def _load(self) -> None:
        with self.torch.no_grad():
            for name, slot in self.slots.items():
                value = self.params[name]
                slot.copy_(self.torch.from_numpy(np.ascontiguousarray(value.T if name[0] == "W" else value)))
                slot.grad = None

    def loss(self, X, y=None):
        torch = self.torch
        self._load()
        if y is None:
            self.net.eval()
            with torch.no_grad():
                return self.net(torch.from_numpy(X)).numpy()
        self.net.train()
        loss = torch.nn.functional.cross_entropy(self.net(torch.from_numpy(X)), torch.from_numpy(y))
        if self.reg:
            loss = loss + 0.5 * self.reg * sum((w * w).sum() for k, w in self.slots.items() if k[0] == "W")
        loss.backward()
        grads = {k: s.grad.numpy().T.copy() if k[0] == "W" else s.grad.numpy().copy() for k, s in self.slots.items()}
        return float(loss.item()), grads


def _pair(torch, settings: Settings, norm, data):
    """normgrad's net for ``settings`` and its PyTorch twin, with the same initial weights."""
    ours = build_model(settings, norm, data)
    return ours, TorchTwin(torch, ours)


def _train(model, data, settings: Settings, torch, seed: int) -> Solver:
    """The demo's Solver on ``model``; torch's dropout masks seeded by ``seed``."""
    from .. import kernels

    torch.manual_seed(seed)
    solver = Solver(model, data, **solver_options(settings))
    with kernels.flushing_denormals():
        solver.train()
    return solver


def first_step_gradient_error(torch, settings: Settings, norm, data) -> float:
    """Largest relative difference (max |ours - torch| / max |torch| per matrix) of the
    weight gradients on the first batch, same initial weights, no dropout."""
    ours, theirs = _pair(torch, dataclasses.replace(settings, dropout_keep_ratio=1.0), norm, data)
    X, y = data["X_train"][:settings.batch_size], data["y_train"][:settings.batch_size]
    _, grads = ours.loss(X, y)
    _, tgrads = theirs.loss(X, y)
    return max(float(np.abs(grads[k] - tgrads[k]).max() / np.abs(tgrads[k]).max()) for k in grads if k[0] == "W")


def _exactness(torch, settings: Settings, data, steps: int):
    """Training losses of both layer-norm nets without dropout, one epoch of at most ``steps``."""
    exact = dataclasses.replace(settings, dropout_keep_ratio=1.0, epochs=1)
    first = dict(data, X_train=data["X_train"][:steps * settings.batch_size],
                 y_train=data["y_train"][:steps * settings.batch_size])
    pair = _pair(torch, exact, "layernorm", first)
    return [_train(m, first, exact, torch, settings.seed).loss_history for m in pair]


def _noise(best: dict, gaps: dict, n_val: int) -> str:
    """Whether the layer-norm-minus-none gaps exceed the sampling noise of a validation accuracy."""
    p = float(np.mean(list(best.values())))
    sigma = (p * (1 - p) / n_val) ** 0.5
    within = all(abs(g) < 2 * sigma for g in gaps.values())
    return (f"the gaps layer norm minus no normalization, {gaps['normgrad']:+.3f} (normgrad) and {gaps['torch']:+.3f} "
            f"(PyTorch), are {'within' if within else 'not all within'} twice the sampling noise of an accuracy "
            f"on the {n_val} validation examples (one standard deviation {sigma:.3f})"
            + (": at this setting the order of the two is noise, in either library." if within else "."))


def _findings(grad_error: dict, diff: np.ndarray, best: dict, epochs: int, n_val: int) -> list[str]:
    same = grad_error["layernorm"] < 1e-5
    findings = [
        f"same weights, same first batch: normgrad's and PyTorch's weight gradients agree to "
        f"{grad_error['layernorm']:.0e} (largest relative difference) with layer norm and "
        f"{grad_error['none']:.0e} without: float32 rounding"
        + (", so normgrad's layer norm computes what PyTorch's does." if same else "; they differ, look closer."),
        f"trained on the same batches without dropout, the layer-norm nets' losses differ by "
        f"{diff[:3].max():.0e} over the first 3 iterations and {diff.max():.0e} over {len(diff)}: training at this "
        "learning rate amplifies rounding differences step by step.",
        f"with the demo's dropout and {epochs} epochs, best validation accuracy: layer norm {best['normgrad', 'layernorm']:.3f} "
        f"(normgrad) / {best['torch', 'layernorm']:.3f} (PyTorch), no normalization {best['normgrad', 'none']:.3f} / "
        f"{best['torch', 'none']:.3f}.",
    ]
    below = best["torch", "layernorm"] < best["torch", "none"]
    findings.append(
        "PyTorch's layer norm also ends below no normalization here: it is the truth of this setting, not a defect."
        if below and best["normgrad", "layernorm"] < best["normgrad", "none"] else
        "PyTorch's layer norm does not end below no normalization: the demo's ranking is not confirmed."
        if not below else "normgrad's and PyTorch's rankings differ: look closer.")
    gaps = {lib: best[lib, "layernorm"] - best[lib, "none"] for lib in ("normgrad", "torch")}
    findings.append(_noise(best, gaps, n_val))
    return findings


def _plot(exact, ranking: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    axes[0].plot(exact[0], label="normgrad"), axes[0].plot(exact[1], "--", label="PyTorch")
    axes[0].set_title("layer norm, no dropout: training loss, same weights and batches")
    axes[0].set_xlabel("iteration"), axes[0].legend()
    for n, r in ranking.items():
        color = "#1f77b4" if n == "layernorm" else "#7f7f7f"
        axes[1].plot(range(1, len(r[0]) + 1), r[0], "-", color=color, label=f"{n}, normgrad")
        axes[1].plot(range(1, len(r[1]) + 1), r[1], "--", color=color, label=f"{n}, PyTorch")
    axes[1].set_title("with dropout: validation accuracy per epoch"), axes[1].set_xlabel("epoch"), axes[1].legend()
    try:
        return save_figure(fig, folder, "layernorm-vs-torch")
    finally:
        plt.close(fig)


def check(torch, settings: Settings) -> dict:
    """Both checks on ``settings``; the results without timing or figures."""
    data = load_data(settings)
    grad_error = {norm or "none": first_step_gradient_error(torch, settings, norm, data) for norm in (None, "layernorm")}
    exact = _exactness(torch, settings, data, EXACT_STEPS)
    diff = np.abs(np.array(exact[0]) - np.array(exact[1]))
    ranking = {norm or "none": [_train(m, data, settings, torch, settings.seed).val_acc_history
                                for m in _pair(torch, settings, norm, data)] for norm in (None, "layernorm")}
    best = {(lib, n): max(r[i]) for n, r in ranking.items() for i, lib in enumerate(("normgrad", "torch"))}
    return {"settings": {**dataclasses.asdict(settings), "exact_steps": len(diff)},
            "runs": [{"library": lib, "normalization": n, "val_acc_history": r[i]}
                     for n, r in ranking.items() for i, lib in enumerate(("normgrad", "torch"))],
            "first_step_gradient_error": grad_error, "loss_difference": diff.tolist(),
            "findings": _findings(grad_error, diff, best, settings.epochs, len(data["y_val"])),
            "exact": exact, "ranking": ranking}


def run(out: Path, quick: bool = False, seed: int = 0, console=None) -> dict | None:
    """Both checks; writes OUT/layernorm-vs-torch/results.json and its figure. None without torch."""
    try:
        import torch
    except ImportError:
        if console is not None:
            console.print("layernorm-vs-torch needs PyTorch (pip install 'normgrad[torch]'): skipped")
        return None
    from . import report

    started = time.perf_counter()
    torch.set_num_threads(1)
    settings = Settings.quick("mnist1d", seed) if quick else Settings(seed=seed)
    found = check(torch, settings)
    folder = Path(out) / "layernorm-vs-torch"
    figures = _plot(found.pop("exact"), found.pop("ranking"), folder)
    results = {"experiment": "layernorm-vs-torch", "description": __doc__.split("\n\n")[0].replace("\n", " "),
               **found, "figures": figures, "seconds": round(time.perf_counter() - started, 1)}
    results["settings"]["quick"] = quick
    atomic_write(folder / "results.json", lambda tmp: tmp.write_text(json.dumps(results, indent=1)))
    report.write(Path(out))
    if console is not None:
        for f in results["findings"]:
            console.print(f"- {f}", markup=False)
    return results
