"""The classic batch-norm studies: what each runs, and what its runs say.

Every study is a list of run configurations (``runs.RunConfig``) and findings
computed from the finished runs (``job`` runs them, ``plots`` draws them, ``report``
writes the page).

Settings follow CS231n's assignment-2 notebooks where they exist (the deep-net,
weight-scale and batch-size experiments of BatchNormalization.ipynb), on MNIST-1D
(40-sample signals, made offline) instead of CIFAR-10, scaled so a full study takes a
few minutes on 2 cores; ``Scale`` says what each study uses, ``--quick`` shrinks it
to seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .runs import RunConfig, label, steps_to


# ----------------------------------------------------------------------------- the studies

@dataclass(frozen=True)
class Scale:
    """The sizes a study runs at (full or --quick)."""

    epochs: int
    num_train: int | None
    hidden_width: int
    seeds: int = 1


FULL = {"deep-net": Scale(10, None, 100), "init-scale": Scale(10, 1000, 50), "batch-size": Scale(10, 1000, 100),
        "steps-to-accuracy": Scale(15, None, 100, seeds=3), "conv-norms": Scale(8, 1000, 0)}
QUICK = {"deep-net": Scale(2, 200, 16), "init-scale": Scale(1, 200, 16), "batch-size": Scale(1, 100, 16),
         "steps-to-accuracy": Scale(2, 300, 16, seeds=2), "conv-norms": Scale(1, 100, 0)}


def configs_for(name: str, quick: bool, seed: int, dataset: str, data_root: str | None) -> list[RunConfig]:
    s = (QUICK if quick else FULL)[name]
    mlp = dict(dataset=dataset, data_root=data_root, num_train=s.num_train, epochs=s.epochs, seed=seed)
    if name == "deep-net":  # CS231n: 5 hidden layers of 100, weight scale 2e-2, Adam 1e-3, batch 50
        return [RunConfig(n, hidden=(s.hidden_width,) * 5, **mlp) for n in (None, "batchnorm")]
    if name == "init-scale":  # CS231n: 7 hidden layers of 50, 20 scales in logspace(-4, 0)
        scales = np.logspace(-4, 0, 4 if quick else 13)
        return [RunConfig(n, weight_scale=float(ws), hidden=(s.hidden_width,) * 7, **mlp)
                for n in (None, "batchnorm", "layernorm") for ws in scales]
    if name == "batch-size":  # CS231n: batch sizes 5, 10, 50 with the deep-net model
        sizes = (2, 10, 50) if quick else (2, 5, 10, 25, 50, 100)
        return [RunConfig(n, batch_size=b, hidden=(s.hidden_width,) * 5, **mlp)
                for n in (None, "batchnorm", "layernorm") for b in sizes]
    if name == "steps-to-accuracy":  # the batch-norm paper's headline, with a 10x learning-rate row
        runs = []
        for k in range(s.seeds):
            base = dict(mlp, seed=seed + k)
            for lr, tag in ((1e-3, ""), (1e-2, "lr10x")):
                runs += [RunConfig(n, hidden=(s.hidden_width,) * 5, learning_rate=lr, eval_every=10, tag=tag,
                                   **base) for n in (None, "batchnorm")]
        return runs
    if name == "conv-norms":  # the group-norm paper's figure: error against batch size
        conv = dict(mlp, dataset="digits" if dataset == "mnist1d" else dataset, model="conv", weight_scale=None,
                    filters=(4, 8) if quick else (8, 16), groups=4)
        sizes = (2, 8) if quick else (2, 4, 8, 16, 32)
        return [RunConfig(n, batch_size=b, **conv)
                for n in ("batchnorm", "groupnorm", "layernorm", "instancenorm", None) for b in sizes]
    raise ValueError(f"unknown study {name!r}")


STUDIES = ("deep-net", "init-scale", "batch-size", "steps-to-accuracy", "conv-norms")
DESCRIPTIONS = {
    "deep-net": "A 6-layer MLP (5 hidden layers) with and without batch norm (CS231n's deep-net experiment).",
    "init-scale": "An 8-layer MLP at weight scales from 1e-4 to 1, without normalization, with batch norm and "
                  "with layer norm (CS231n's weight-initialization experiment).",
    "batch-size": "The 6-layer MLP at batch sizes from 2 to 100: batch norm, layer norm and none, same number "
                  "of epochs (CS231n's batch-size experiment).",
    "steps-to-accuracy": "Steps to reach the unnormalized model's best validation accuracy, with batch norm, "
                         "over several seeds, and at a 10x learning rate (the batch-norm paper's headline).",
    "conv-norms": "The conv net on 8x8 digit images with batch, group, layer, instance norm and none, across "
                  "batch sizes (the group-norm paper's figure, at this scale).",
}


# ----------------------------------------------------------------------------- findings

def _by(runs, **match):
    return [r for r in runs if all(r[k] == v for k, v in match.items())]


def _span(values) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def findings(name: str, runs: list[dict]) -> list[str]:
    """One sentence per finding, each with the numbers it rests on."""
    out = []
    if name == "deep-net":
        none, bn = _by(runs, normalization=None)[0], _by(runs, normalization="batchnorm")[0]
        out.append(f"batch norm's best validation accuracy is {bn['best_val_acc']:.3f}, no normalization's "
                   f"{none['best_val_acc']:.3f}; final training loss {_loss(bn)} vs {_loss(none)}.")
        first = _first_epoch_at(none, bn)
        out.append(first)
        verdict = "as CS231n's notebook expects" if bn["best_val_acc"] > none["best_val_acc"] else \
            "contrary to CS231n's notebook, where batch norm trains the deep net faster and better"
        out.append(f"batch norm {'beats' if bn['best_val_acc'] > none['best_val_acc'] else 'does not beat'} "
                   f"no normalization here, {verdict}.")
    elif name == "init-scale":
        out += _init_scale_findings(runs)
    elif name == "batch-size":
        sizes = sorted({r["batch_size"] for r in runs})
        for norm in (None, "batchnorm", "layernorm"):
            small, large = _by(runs, normalization=norm, batch_size=sizes[0])[0], \
                _by(runs, normalization=norm, batch_size=sizes[-1])[0]
            out.append(f"{label(norm)}: best validation accuracy {small['best_val_acc']:.3f} at batch {sizes[0]} vs "
                       f"{large['best_val_acc']:.3f} at batch {sizes[-1]} "
                       f"({small['best_val_acc'] - large['best_val_acc']:+.3f}).")
        drop = {n: _by(runs, normalization=n, batch_size=sizes[-1])[0]["best_val_acc"]
                - _by(runs, normalization=n, batch_size=sizes[0])[0]["best_val_acc"] for n in ("batchnorm", "layernorm")}
        out.append(f"at the smallest batch batch norm loses {drop['batchnorm']:.3f} of its accuracy at the largest, "
                   f"layer norm {drop['layernorm']:.3f}: "
                   + ("batch norm degrades more, as CS231n's notebook and the group-norm paper say."
                      if drop["batchnorm"] > drop["layernorm"] else
                      "batch norm does not degrade more here, contrary to the notebook and the group-norm paper."))
    elif name == "steps-to-accuracy":
        out += _steps_findings(runs)
    elif name == "conv-norms":
        sizes = sorted({r["batch_size"] for r in runs})
        for norm in ("batchnorm", "groupnorm", "layernorm", "instancenorm", None):
            errs = [1 - _by(runs, normalization=norm, batch_size=b)[0]["best_val_acc"] for b in sizes]
            out.append(f"{label(norm)}: validation error {errs[-1]:.3f} at batch {sizes[-1]}, {errs[0]:.3f} at "
                       f"batch {sizes[0]} ({errs[0] - errs[-1]:+.3f}).")
        bn_rise = _rise(runs, "batchnorm", sizes)
        gn_rise = _rise(runs, "groupnorm", sizes)
        verdict = ("batch norm's error rises more than group norm's, as in the group-norm paper."
                   if bn_rise > max(gn_rise, 0.0) else
                   "batch norm's error does not rise more than group norm's, unlike in the group-norm paper "
                   "(there the small batches are per-GPU statistics with the same total batch and steps; here a "
                   "smaller batch also means more updates in the same epochs).")
        out.append(f"from batch {sizes[-1]} to {sizes[0]} batch norm's error changes by {bn_rise:+.3f}, group "
                   f"norm's by {gn_rise:+.3f}: {verdict}")
    return out


def _init_scale_findings(runs: list[dict]) -> list[str]:
    out, means = [], {}
    for norm in (None, "batchnorm", "layernorm"):
        rs = _by(runs, normalization=norm)
        accs = [r["best_val_acc"] for r in rs]
        means[norm] = float(np.mean(accs))
        best = max(rs, key=lambda r: r["best_val_acc"])
        out.append(f"{label(norm)}: best validation accuracy spans {_span(accs)} across weight scales "
                   f"{min(r['weight_scale'] for r in rs):g}..{max(r['weight_scale'] for r in rs):g} "
                   f"(mean {means[norm]:.3f}; highest at scale {best['weight_scale']:.2g}).")
    robust = means["batchnorm"] > means[None]
    out.append(f"averaged over the scales batch norm reaches {means['batchnorm']:.3f}, no normalization "
               f"{means[None]:.3f}: " + ("batch norm is the less sensitive to the initialization scale, as "
                                          "CS231n's notebook expects." if robust else
                                          "batch norm is not less sensitive here, contrary to CS231n's notebook."))
    return out


def _loss(run) -> str:
    return "diverged" if run["final_train_loss"] is None else f"{run['final_train_loss']:.3f}"


def _first_epoch_at(none: dict, bn: dict) -> str:
    target = none["best_val_acc"]
    epoch = next((i + 1 for i, a in enumerate(bn["val_acc_history"]) if a >= target), None)
    at = next((i + 1 for i, a in enumerate(none["val_acc_history"]) if a >= target), None)
    return (f"batch norm reaches no normalization's best validation accuracy ({target:.3f}) after "
            + (f"epoch {epoch}" if epoch else "no epoch") + f", no normalization after epoch {at}.")


def _rise(runs, norm, sizes) -> float:
    small = _by(runs, normalization=norm, batch_size=sizes[0])[0]["best_val_acc"]
    large = _by(runs, normalization=norm, batch_size=sizes[-1])[0]["best_val_acc"]
    return large - small


def _steps_findings(runs: list[dict]) -> list[str]:
    seeds = sorted({r["seed"] for r in runs})
    rows = {"batch norm": [], "batch norm, 10x learning rate": [], "none, 10x learning rate": []}
    targets = []
    for s in seeds:
        base = _by(runs, normalization=None, seed=s, tag="")[0]
        target = base["best_val_acc"]
        targets.append(target)
        ref = steps_to(base, target)
        for row, run in (("batch norm", _by(runs, normalization="batchnorm", seed=s, tag="")[0]),
                         ("batch norm, 10x learning rate", _by(runs, normalization="batchnorm", seed=s, tag="lr10x")[0]),
                         ("none, 10x learning rate", _by(runs, normalization=None, seed=s, tag="lr10x")[0])):
            steps = steps_to(run, target)
            rows[row].append(None if steps is None else ref / steps)
    out = [f"target: the unnormalized model's best validation accuracy at learning rate 1e-3, "
           f"{_span(targets)} over {len(seeds)} seed(s)."]
    for row, ratios in rows.items():
        reached = [r for r in ratios if r is not None]
        if len(reached) == len(ratios):
            out.append(f"{row}: reaches it in {np.mean(reached):.1f}x fewer steps than no normalization "
                       f"(mean over {len(ratios)} seeds, range {min(reached):.1f}-{max(reached):.1f}).")
        else:
            out.append(f"{row}: reaches it with {len(reached)} of {len(ratios)} seeds"
                       + (f" ({np.mean(reached):.1f}x fewer steps where it does)." if reached else "."))
    bn = [r for r in rows["batch norm"] if r is not None]
    out.append("the batch-norm paper reports 14x fewer steps for Inception on ImageNet; here "
               + (f"batch norm needs {np.mean(bn):.1f}x fewer steps." if bn else "batch norm never gets there."))
    plain_fast = [r for r in rows["none, 10x learning rate"] if r is not None]
    out.append("in the paper only the normalized net trains at the higher learning rate; here the unnormalized "
               + ("net also reaches the target at 10x the learning rate (Adam, not the paper's SGD), so that "
                  "advantage is not reproduced." if len(plain_fast) == len(rows["none, 10x learning rate"]) else
                  "net fails to reach the target at 10x the learning rate with some seeds, as the paper says."))
    return out
