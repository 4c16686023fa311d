"""The demo's figures: learning curves and per-layer activation distributions, PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..outputs import save_figure
from .settings import Settings
from .training import HIST_EDGES, RunResult

COLORS = {"no norm": "#7f7f7f", "batch norm": "#d62728", "layer norm": "#1f77b4"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(results: list[RunResult], settings: Settings, out: Path) -> list[str]:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for r in results:
        c = COLORS[r.label]
        loss = np.asarray(r.loss_history)
        k = max(1, len(loss) // 100)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        axes[0].plot(np.arange(len(smooth)) + k, smooth, color=c, label=r.label)
        epochs = np.arange(1, len(r.val_acc_history) + 1) * r.iterations_per_epoch
        axes[1].plot(epochs, r.train_acc_history, color=c, label=r.label)
        axes[2].plot(epochs, r.val_acc_history, color=c, label=r.label)
    axes[0].set(title="training loss (moving average)", xlabel="iteration", ylabel="loss")
    axes[1].set(title="training accuracy", xlabel="iteration", ylabel="accuracy")
    axes[2].set(title="validation accuracy", xlabel="iteration", ylabel="accuracy")
    axes[2].axhline(settings.target_accuracy, color="black", lw=0.8, ls=":", label="target")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{len(settings.hidden) + 1}-layer MLP on {settings.dataset}, initial weight std "
                 f"{settings.weight_scale:g}, same seed")
    names = save_figure(fig, out, "curves")
    plt.close(fig)
    return names


def plot_activations(results: list[RunResult], out: Path) -> list[str]:
    """Rows: models; columns: hidden layers; each panel overlays the pre-activation
    histogram before training, after the first epoch and at the end."""
    plt = _pyplot()
    layers = len(results[0].activation_hist[0])
    fig, axes = plt.subplots(len(results), layers, figsize=(2.1 * layers, 2.0 * len(results)), sharex=True,
                             squeeze=False)
    centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    width = HIST_EDGES[1] - HIST_EDGES[0]
    for row, r in enumerate(results):
        last = len(r.activation_hist) - 1
        moments = [(0, "before training", "#bbbbbb"), (min(1, last), "after epoch 1", "#ff9f40"),
                   (last, f"after epoch {last}", COLORS[r.label])]
        for layer in range(layers):
            ax = axes[row, layer]
            for epoch, name, color in moments:
                counts = np.asarray(r.activation_hist[epoch][layer], dtype=float)
                ax.step(centres, counts / max(counts.sum(), 1) / width, where="mid", color=color, label=name)
            ax.set_yticks([])
            std = r.activation_std[last][layer]
            ax.set_title(f"layer {layer + 1}  std {r.activation_std[0][layer]:.2g}→{std:.2g}", fontsize=8)
            if layer == 0:
                ax.set_ylabel(r.label)
        axes[row, -1].legend(fontsize=6, loc="upper right")
    fig.suptitle("pre-activations (after the norm, before the relu) of each hidden layer on a fixed "
                 "validation batch, training-mode statistics")
    names = save_figure(fig, out, "activations")
    plt.close(fig)
    return names
