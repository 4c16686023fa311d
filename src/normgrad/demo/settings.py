"""The demo's settings and data: one record of everything that decides a run.

The layer-norm check of ``normgrad experiment layernorm-vs-torch`` trains from these
same settings (``Settings``, ``load_data``), so its verdict is about the demo's setting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODELS = (("no norm", None), ("batch norm", "batchnorm"), ("layer norm", "layernorm"))


@dataclass
class Settings:
    """Everything that decides a run; written into the report."""

    dataset: str = "mnist1d"
    epochs: int = 40
    seed: int = 0
    hidden: tuple[int, ...] = (256,) * 7
    weight_scale: float = 0.05
    learning_rate: float = 3e-3
    lr_decay: float = 0.9
    batch_size: int = 50
    dropout_keep_ratio: float = 0.9
    reg: float = 1e-3
    target_accuracy: float = 0.6
    max_train: int | None = None  # cap on training examples (--quick)
    flush_denormals: bool = True  # training runs with subnormal floats flushed to zero (kernels.flushing_denormals)
    smoke: bool = False  # --quick: a smoke run of the small net, not a comparison

    @classmethod
    def quick(cls, dataset: str, seed: int) -> "Settings":
        return cls(dataset=dataset, epochs=3, seed=seed, hidden=(32,) * 3, learning_rate=5e-3, batch_size=50,
                   target_accuracy=0.3, max_train=600, smoke=True)


def load_data(settings: Settings) -> dict[str, np.ndarray]:
    """The data set of ``settings`` (split by its seed), capped at ``max_train`` training examples."""
    from ..data import DATASETS

    if settings.dataset not in DATASETS:
        raise ValueError(f"--dataset must be one of {sorted(DATASETS)}, got {settings.dataset!r}")
    data = DATASETS[settings.dataset](seed=settings.seed)
    if settings.max_train:
        data["X_train"], data["y_train"] = data["X_train"][: settings.max_train], data["y_train"][: settings.max_train]
    return data


def build_model(settings: Settings, normalization: str | None, data):
    """The demo's MLP for ``data``, with ``normalization`` (None, 'batchnorm', 'layernorm')."""
    from ..classifiers import FullyConnectedNet

    return FullyConnectedNet(list(settings.hidden), input_dim=data["X_train"].shape[1],
                             num_classes=int(data["y_train"].max()) + 1, normalization=normalization,
                             dropout_keep_ratio=settings.dropout_keep_ratio, reg=settings.reg,
                             weight_scale=settings.weight_scale, rng=settings.seed)


def solver_options(settings: Settings) -> dict:
    """The demo's ``Solver`` arguments: Adam, its learning rate and decay, batch, epochs, batch order."""
    return dict(update_rule="adam", optim_config={"learning_rate": settings.learning_rate},
                lr_decay=settings.lr_decay, batch_size=settings.batch_size, num_epochs=settings.epochs,
                num_train_samples=1000, verbose=False, seed=settings.seed)
