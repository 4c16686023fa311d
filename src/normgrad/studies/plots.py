"""Each study's figure, from its runs, as PNG and SVG in the study's folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..outputs import save_figure
from .runs import COLORS, label, steps_to


def plot(name: str, runs: list[dict], folder: Path) -> list[str]:
    """Draw study ``name``; returns the file names written (PNG first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = {"deep-net": _deep_net, "init-scale": _init_scale, "batch-size": _batch_size,
           "steps-to-accuracy": _steps, "conv-norms": _conv_norms}[name](plt, runs)
    try:
        return save_figure(fig, folder, name)
    finally:
        plt.close(fig)


def _norms(runs):
    seen = []
    for r in runs:
        if r["normalization"] not in seen:
            seen.append(r["normalization"])
    return seen


def _deep_net(plt, runs):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for r in runs:
        c, lab = COLORS[r["normalization"]], label(r["normalization"])
        axes[0].plot(r["loss_history"], color=c, alpha=0.8, lw=0.8, label=lab)
        epochs = np.arange(1, len(r["train_acc_history"]) + 1)
        axes[1].plot(epochs, r["train_acc_history"], "o-", color=c, label=lab)
        axes[2].plot(epochs, r["val_acc_history"], "o-", color=c, label=lab)
    for ax, title, xl in zip(axes, ("training loss", "training accuracy", "validation accuracy"),
                             ("iteration", "epoch", "epoch")):
        ax.set_title(title)
        ax.set_xlabel(xl)
        ax.legend()
    return fig


def _init_scale(plt, runs):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for norm in _norms(runs):
        rs = sorted((r for r in runs if r["normalization"] == norm), key=lambda r: r["weight_scale"])
        ws = [r["weight_scale"] for r in rs]
        kw = dict(color=COLORS[norm], marker="o", label=label(norm))
        axes[0].semilogx(ws, [r["best_val_acc"] for r in rs], **kw)
        axes[1].semilogx(ws, [r["best_train_acc"] for r in rs], **kw)
        axes[2].semilogx(ws, [np.nan if r["final_train_loss"] is None else r["final_train_loss"] for r in rs], **kw)
    for ax, title in zip(axes, ("best validation accuracy", "best training accuracy", "final training loss")):
        ax.set_title(title)
        ax.set_xlabel("weight initialization scale")
        ax.legend()
    return fig


def _batch_size(plt, runs):
    norms = _norms(runs)
    sizes = sorted({r["batch_size"] for r in runs})
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(2, len(norms) + 1, figsize=(5 * (len(norms) + 1), 8), squeeze=False)
    for j, norm in enumerate(norms):
        for i, b in enumerate(sizes):
            r = next(r for r in runs if r["normalization"] == norm and r["batch_size"] == b)
            color = cmap(i / max(1, len(sizes) - 1))
            epochs = np.arange(1, len(r["train_acc_history"]) + 1)
            axes[0, j].plot(epochs, r["train_acc_history"], "o-", ms=3, color=color, label=f"batch {b}")
            axes[1, j].plot(epochs, r["val_acc_history"], "o-", ms=3, color=color, label=f"batch {b}")
        axes[0, j].set_title(f"{label(norm)}: training accuracy")
        axes[1, j].set_title(f"{label(norm)}: validation accuracy")
        axes[1, j].set_xlabel("epoch")
        axes[0, j].legend(fontsize=8)
    for norm in norms:
        rs = sorted((r for r in runs if r["normalization"] == norm), key=lambda r: r["batch_size"])
        kw = dict(color=COLORS[norm], marker="o", label=label(norm))
        axes[0, -1].semilogx([r["batch_size"] for r in rs], [r["best_train_acc"] for r in rs], **kw)
        axes[1, -1].semilogx([r["batch_size"] for r in rs], [r["best_val_acc"] for r in rs], **kw)
    axes[0, -1].set_title("best training accuracy")
    axes[1, -1].set_title("best validation accuracy")
    axes[1, -1].set_xlabel("batch size")
    axes[0, -1].legend()
    return fig


def _steps(plt, runs):
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    seed = min(r["seed"] for r in runs)
    base = next(r for r in runs if r["normalization"] is None and r["seed"] == seed and r["tag"] == "")
    target = base["best_val_acc"]
    for r in (r for r in runs if r["seed"] == seed):
        style = "-" if r["tag"] == "" else "--"
        axes[0].plot(r["val_steps"], r["val_acc_by_step"], style, color=COLORS[r["normalization"]],
                     label=f"{label(r['normalization'])}, lr {r['learning_rate']:g}")
    axes[0].axhline(target, color="k", lw=0.8, ls=":", label="target")
    axes[0].set_title(f"validation accuracy (seed {seed})")
    axes[0].set_xlabel("training step")
    axes[0].legend(fontsize=8)
    rows = {}
    for r in runs:
        if r["normalization"] is None and r["tag"] == "":
            continue
        ref = next(x for x in runs if x["normalization"] is None and x["seed"] == r["seed"] and x["tag"] == "")
        steps, base_steps = steps_to(r, ref["best_val_acc"]), steps_to(ref, ref["best_val_acc"])
        key = f"{label(r['normalization'])}, lr {r['learning_rate']:g}"
        rows.setdefault(key, []).append(0.0 if steps is None else base_steps / steps)
    names = list(rows)
    means = [np.mean(v) for v in rows.values()]
    spread = [np.std(v) for v in rows.values()]
    axes[1].bar(range(len(names)), means, yerr=spread, color=["#d62728" if "batch" in n else "#7f7f7f" for n in names])
    axes[1].set_xticks(range(len(names)), names, rotation=15, fontsize=8)
    axes[1].set_title("speed-up to the target (0: never reached); mean and std over seeds")
    return fig


def _conv_norms(plt, runs):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for norm in _norms(runs):
        rs = sorted((r for r in runs if r["normalization"] == norm), key=lambda r: r["batch_size"])
        ax.plot([r["batch_size"] for r in rs], [1 - r["best_val_acc"] for r in rs], "o-", color=COLORS[norm],
                label=label(norm))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (examples per batch)")
    ax.set_ylabel("validation error")
    ax.set_title("validation error against batch size")
    ax.legend()
    return fig
