"""Is layer norm's place below no normalization in the demo the truth of that setting,
or a defect in normgrad's layer norm? The same nets, trained by PyTorch.

Two checks, on the demo's 8-layer MLP (hidden 256, initial weight std 0.05, Adam
3e-3, batch 50, MNIST-1D), each net built once in normgrad and copied into an
equivalent ``torch.nn.Sequential`` (same initial weights, same batch order):

1. exactness: the first batch's gradients of every weight matrix, normgrad's against
   PyTorch's (float32), and, without dropout, how the two training-loss curves drift
   apart afterwards (rounding differences, amplified by training);
2. the ranking: with the demo's dropout (each library its own masks) and its epochs,
   layer norm and no normalization trained by each library, best validation accuracy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .._io import atomic_write
from .study_runs import load_data

HIDDEN, SCALE, LR, BATCH = (256,) * 7, 0.05, 3e-3, 50


def _normgrad_net(norm, seed, keep):
    from ..classifiers import FullyConnectedNet

    return FullyConnectedNet(list(HIDDEN), input_dim=40, num_classes=10, normalization=norm,
                             dropout_keep_ratio=keep, weight_scale=SCALE, rng=seed)


def _torch_twin(torch, model, keep):
    """The same layers in torch, with model's initial weights."""
    layers, dims = [], [40, *HIDDEN]
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]), start=1):
        lin = torch.nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(model.params[f"W{i}"].T.copy()))
            lin.bias.copy_(torch.from_numpy(model.params[f"b{i}"]))
        layers.append(lin)
        if model.normalization == "layernorm":
            layers.append(torch.nn.LayerNorm(b))
        layers.append(torch.nn.ReLU())
        if keep < 1:
            layers.append(torch.nn.Dropout(1 - keep))
    head = torch.nn.Linear(dims[-1], 10)
    k = len(HIDDEN) + 1
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(model.params[f"W{k}"].T.copy()))
        head.bias.copy_(torch.from_numpy(model.params[f"b{k}"]))
    return torch.nn.Sequential(*layers, head)


def _train_both(torch, norm, seed, keep, epochs, data, max_steps=None):
    """(normgrad losses, torch losses, normgrad val accs, torch val accs) over the same batches."""
    from .. import kernels, optim
    from ..training import accuracy

    torch.manual_seed(seed)
    ours = _normgrad_net(norm, seed, keep)
    theirs = _torch_twin(torch, ours, keep)
    opt = torch.optim.Adam(theirs.parameters(), lr=LR)
    configs = {k: {"learning_rate": LR} for k in ours.params}
    X, y, rng = data["X_train"], data["y_train"], np.random.default_rng([seed, 1])
    losses, tlosses, vals, tvals, step = [], [], [], [], 0
    tX, ty = torch.from_numpy(data["X_val"]), data["y_val"]
    with kernels.flushing_denormals():
        for _ in range(epochs):
            order = rng.permutation(len(X))
            for start in range(0, len(X) - BATCH + 1, BATCH):
                idx = order[start:start + BATCH]
                loss, grads = ours.loss(X[idx], y[idx])
                for k, w in ours.params.items():
                    ours.params[k], configs[k] = optim.adam(w, grads[k], configs[k])
                theirs.train()
                opt.zero_grad()
                tloss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(X[idx])), torch.from_numpy(y[idx]))
                tloss.backward()
                opt.step()
                losses.append(float(loss))
                tlosses.append(tloss.item())
                step += 1
                if max_steps and step >= max_steps:
                    return losses, tlosses, vals, tvals
            vals.append(accuracy(ours, data["X_val"], data["y_val"]))
            theirs.eval()
            with torch.no_grad():
                tvals.append(float((theirs(tX).argmax(1).numpy() == ty).mean()))
    return losses, tlosses, vals, tvals


def first_step_gradient_error(torch, norm, seed, data) -> float:
    """Largest relative difference (max |ours - torch| / max |torch| per matrix) of the
    weight gradients on the first batch, same initial weights, no dropout."""
    ours = _normgrad_net(norm, seed, 1.0)
    theirs = _torch_twin(torch, ours, 1.0)
    X, y = data["X_train"][:BATCH], data["y_train"][:BATCH]
    _, grads = ours.loss(X, y)
    torch.nn.functional.cross_entropy(theirs(torch.from_numpy(X)), torch.from_numpy(y)).backward()
    linears = [m for m in theirs if isinstance(m, torch.nn.Linear)]
    return max(float(np.abs(grads[f"W{i}"] - m.weight.grad.numpy().T).max() / np.abs(m.weight.grad.numpy()).max())
               for i, m in enumerate(linears, start=1))


def run(out: Path, quick: bool = False, seed: int = 0, console=None) -> dict | None:
    """Both checks; writes OUT/layernorm-vs-torch/results.json and its figure. None without torch."""
    try:
        import torch
    except ImportError:
        if console is not None:
            console.print("layernorm-vs-torch needs PyTorch (pip install 'normgrad[torch]'): skipped")
        return None
    from . import study_report
    from .demo import _save_figure

    started = time.perf_counter()
    torch.set_num_threads(1)
    data = load_data("mnist1d", None, "mlp")
    steps = 20 if quick else 100
    grad_error = {norm or "none": first_step_gradient_error(torch, norm, seed, data) for norm in (None, "layernorm")}
    exact = _train_both(torch, "layernorm", seed, 1.0, 1, data, max_steps=steps)
    diff = np.abs(np.array(exact[0]) - np.array(exact[1]))
    epochs = 1 if quick else 40
    ranking = {norm or "none": _train_both(torch, norm, seed, 0.9, epochs, data) for norm in (None, "layernorm")}
    best = {(lib, n): max(r[2] if lib == "normgrad" else r[3]) for n, r in ranking.items() for lib in ("normgrad", "torch")}
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
    folder = Path(out) / "layernorm-vs-torch"
    folder.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    axes[0].plot(exact[0], label="normgrad"), axes[0].plot(exact[1], "--", label="PyTorch")
    axes[0].set_title("layer norm, no dropout: training loss, same weights and batches")
    axes[0].set_xlabel("iteration"), axes[0].legend()
    for n, r in ranking.items():
        color = "#1f77b4" if n == "layernorm" else "#7f7f7f"
        axes[1].plot(range(1, len(r[2]) + 1), r[2], "-", color=color, label=f"{n}, normgrad")
        axes[1].plot(range(1, len(r[3]) + 1), r[3], "--", color=color, label=f"{n}, PyTorch")
    axes[1].set_title("with dropout: validation accuracy per epoch"), axes[1].set_xlabel("epoch"), axes[1].legend()
    figures = _save_figure(fig, folder, "layernorm-vs-torch")
    plt.close(fig)
    results = {"experiment": "layernorm-vs-torch", "description": __doc__.split("\n\n")[0].replace("\n", " "),
               "settings": {"quick": quick, "seed": seed, "hidden": list(HIDDEN), "weight_scale": SCALE,
                            "learning_rate": LR, "batch_size": BATCH, "epochs": epochs, "exact_steps": steps},
               "runs": [{"library": lib, "normalization": n, "val_acc_history": r[2] if lib == "normgrad" else r[3]}
                        for n, r in ranking.items() for lib in ("normgrad", "torch")],
               "first_step_gradient_error": grad_error, "loss_difference": diff.tolist(), "findings": findings, "figures": figures,
               "seconds": round(time.perf_counter() - started, 1)}
    atomic_write(folder / "results.json", lambda tmp: tmp.write_text(json.dumps(results, indent=1)))
    study_report.write(Path(out))
    if console is not None:
        for f in findings:
            console.print(f"- {f}", markup=False)
    return results
