"""One training run of a study, and running many of them: in worker processes, saved
as each finishes, resumed from what is saved.

A run is a dict of settings (``RunConfig``): the model (an MLP or the conv net), its
normalization, weight scale, batch size, learning rate, epochs and seed. The Solver
trains it with Adam on a fixed split of the data set (the split does not depend on the
run's seed; the initial weights, the batch order and the dropout masks do) and records
the training loss of every iteration, the train and validation accuracy after every
epoch (and every ``eval_every`` iterations, when set).

Every run executes in a worker process with one thread for NumPy's BLAS, OpenMP and
Numba, so its numbers do not depend on ``--jobs``: ``--jobs 1`` and ``--jobs 2`` write
the same results.
"""

from __future__ import annotations

import functools
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..outputs import atomic_write

NORM_LABELS = {None: "none", "batchnorm": "batch norm", "layernorm": "layer norm", "groupnorm": "group norm",
               "instancenorm": "instance norm"}
COLORS = {None: "#7f7f7f", "batchnorm": "#d62728", "layernorm": "#1f77b4", "groupnorm": "#2ca02c",
          "instancenorm": "#9467bd"}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
TRAIN_ACC_SAMPLES = 500  # a fixed subsample of the training set for the per-epoch train accuracy


@dataclass(frozen=True)
class RunConfig:
    """Everything one run depends on."""

    normalization: str | None  # None, 'batchnorm', 'layernorm', 'groupnorm', 'instancenorm'
    weight_scale: float | None = 2e-2  # None: He initialization (the conv net)
    batch_size: int = 50
    learning_rate: float = 1e-3
    epochs: int = 10
    seed: int = 0
    dataset: str = "mnist1d"
    data_root: str | None = None  # cifar10 only
    num_train: int | None = 1000  # training examples used (None: all)
    model: str = "mlp"  # 'mlp' or 'conv'
    hidden: tuple[int, ...] = (100,) * 5  # mlp
    filters: tuple[int, ...] = (8, 16)  # conv
    groups: int = 4  # group norm's G (conv)
    dropout_keep_ratio: float = 1.0
    eval_every: int = 0  # also evaluate every this many iterations (0: per epoch only)
    tag: str = ""  # distinguishes runs that differ in nothing above (e.g. a learning-rate row)

    @property
    def key(self) -> str:
        """A file-name-safe name, unique within a study."""
        parts = [self.normalization or "none", f"ws{self.weight_scale:g}" if self.weight_scale else "he",
                 f"bs{self.batch_size}", f"lr{self.learning_rate:g}", f"s{self.seed}"]
        return "-".join(parts + ([self.tag] if self.tag else []))


@functools.lru_cache(maxsize=4)
def load_data(dataset: str, data_root: str | None, model: str) -> dict[str, np.ndarray]:
    """The study's data split (seed 0, so every run shares it); images (N, C, H, W) for the conv net."""
    from ..data import synthetic

    if dataset == "mnist1d":
        data = synthetic.load_mnist1d()
    elif dataset == "digits":
        data = synthetic.load_digits()
    elif dataset == "cifar10":
        if data_root is None:
            raise ValueError("--dataset cifar10 needs --data-root DIR (the extracted cifar-10-batches-py)")
        from ..data.cifar10 import load_cifar10

        data = load_cifar10(data_root)
    else:
        raise ValueError(f"unknown dataset {dataset!r}: use mnist1d, digits or cifar10")
    if model == "conv" and dataset == "digits":
        data = {k: (a.reshape(-1, 1, 8, 8) if k.startswith("X") else a) for k, a in data.items()}
    if model == "conv" and dataset == "mnist1d":
        raise ValueError("the conv net needs images: use --dataset digits or cifar10")
    if model == "mlp":
        data = {k: (a.reshape(len(a), -1) if k.startswith("X") else a) for k, a in data.items()}
    return data


def _model(cfg: RunConfig, data):
    from ..classifiers import ConvNet, FullyConnectedNet

    classes = int(data["y_train"].max()) + 1
    if cfg.model == "conv":
        return ConvNet(data["X_train"].shape[1:], cfg.filters, classes, cfg.normalization, G=cfg.groups,
                       weight_scale=cfg.weight_scale, rng=cfg.seed)
    return FullyConnectedNet(list(cfg.hidden), input_dim=data["X_train"].shape[1], num_classes=classes,
                             normalization=cfg.normalization, dropout_keep_ratio=cfg.dropout_keep_ratio,
                             weight_scale=cfg.weight_scale, rng=cfg.seed)


def train(cfg: RunConfig) -> dict:
    """Train one configuration with the Solver; returns its record (settings, histories, summaries).

    A loss that is not finite stops the run (``diverged``): its histories end with the
    last finite step and the last finished epoch.
    """
    from .. import kernels
    from ..solver import Solver

    data = load_data(cfg.dataset, cfg.data_root, cfg.model)
    if cfg.num_train is not None:
        data = dict(data, X_train=data["X_train"][:cfg.num_train], y_train=data["y_train"][:cfg.num_train])
    model = _model(cfg, data)
    val_steps, val_by_step = [], []

    def evaluate(s, acc: float | None = None) -> None:
        """Validation accuracy after iteration ``s.t`` (each iteration recorded once)."""
        if not val_steps or val_steps[-1] != s.t:
            val_steps.append(s.t)
            val_by_step.append(s.check_accuracy(s.X_val, s.y_val) if acc is None else acc)

    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": cfg.learning_rate},
                    batch_size=cfg.batch_size, num_epochs=cfg.epochs, num_train_samples=TRAIN_ACC_SAMPLES,
                    verbose=False, seed=cfg.seed + 2**32,  # the batch order's own stream, apart from the
                    # weights' (rng=cfg.seed): numpy's stream of the seed words [cfg.seed, 1]
                    epoch_callback=lambda s: evaluate(s, s.val_acc_history[-1]),
                    iteration_callback=lambda s: evaluate(s) if cfg.eval_every and s.t % cfg.eval_every == 0
                    else None)
    diverged = False
    with kernels.flushing_denormals():  # dying nets fill their gradients with subnormals (see kernels)
        try:
            solver.train()
        except FloatingPointError:
            diverged = True
    loss_history, train_acc, val_acc = solver.loss_history, solver.train_acc_history, solver.val_acc_history
    return {**asdict(cfg), "key": cfg.key, "diverged": diverged, "iterations": len(loss_history),
            "best_val_acc": max(val_acc, default=0.0), "best_train_acc": max(train_acc, default=0.0),
            "final_train_loss": loss_history[-1] if loss_history and not diverged else None,
            "loss_history": loss_history, "train_acc_history": train_acc, "val_acc_history": val_acc,
            "val_steps": val_steps, "val_acc_by_step": val_by_step}


@dataclass
class RunStore:
    """A study's finished runs on disk: ``DIR/runs/KEY.json``, each written atomically."""

    folder: Path
    runs: dict = field(default_factory=dict)

    def __post_init__(self):
        (self.folder / "runs").mkdir(parents=True, exist_ok=True)
        for path in sorted((self.folder / "runs").glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # a run interrupted before its atomic rename leaves nothing; anything else is redone
            self.runs[record["key"]] = record

    def save(self, record: dict) -> None:
        path = self.folder / "runs" / f"{record['key']}.json"
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record)))
        self.runs[record["key"]] = record


def run_all(configs: list[RunConfig], store: RunStore, jobs: int, on_done=None) -> list[dict]:
    """Every configuration's record, in ``configs`` order: those in ``store`` as saved,
    the others trained in ``jobs`` worker processes and saved as each finishes.
    ``on_done(record)`` is called for each (saved or new)."""
    todo = [c for c in configs if c.key not in store.runs]
    for c in configs:
        if c.key in store.runs and on_done:
            on_done(store.runs[c.key])
    if todo:
        saved_env = {k: os.environ.get(k) for k in ONE_THREAD}
        os.environ.update(ONE_THREAD)  # read by the workers when they start
        try:
            import multiprocessing

            with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(train, c) for c in todo]
                for future in as_completed(futures):
                    record = future.result()
                    store.save(record)
                    if on_done:
                        on_done(record)
        finally:
            for k, value in saved_env.items():
                if value is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = value
    return [store.runs[c.key] for c in configs]


def label(norm) -> str:
    """A normalization's name in tables and legends."""
    return NORM_LABELS[norm]


def steps_to(run: dict, target: float) -> int | None:
    """The first evaluated step at which the run's validation accuracy reached ``target``."""
    for step, acc in zip(run["val_steps"], run["val_acc_by_step"]):
        if acc >= target:
            return step
    return None
