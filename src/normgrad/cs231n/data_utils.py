"""The course's ``data_utils``: CIFAR-10 from the python batch files you have on disk,
read with normgrad's safe unpickler (``normgrad.data.cifar10``: a file that would run
code when unpickled is refused)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.cifar10 import _load_batch, read_cifar10

DEFAULT_DIR = Path("cs231n") / "datasets" / "cifar-10-batches-py"  # from the assignment folder


def load_CIFAR_batch(filename):
    """(X (n, 32, 32, 3) float64, y (n,)) from one batch file, as the course's."""
    X, y = _load_batch(Path(filename))
    return X.transpose(0, 2, 3, 1).astype(np.float64), y


def load_CIFAR10(ROOT):
    """(Xtr, Ytr, Xte, Yte): all training batches and the test batch, images (n, 32, 32, 3) float64."""
    X, y, X_test, y_test = read_cifar10(ROOT)
    return X.transpose(0, 2, 3, 1).astype(np.float64), y, X_test.transpose(0, 2, 3, 1).astype(np.float64), y_test


def get_CIFAR10_data(num_training=49000, num_validation=1000, num_test=1000, subtract_mean=True, cifar10_dir=None):
    """The course's splits: the first ``num_training`` training images, the next
    ``num_validation`` for validation, the first ``num_test`` test images; the training
    mean image subtracted; images (n, 3, 32, 32) float32 (the course's are float64:
    half the memory, the same values to float32 precision).

    ``cifar10_dir``: default ``$CIFAR10_DIR``, else ``cs231n/datasets/cifar-10-batches-py``
    under the working directory (where the notebooks run).
    """
    root = Path(cifar10_dir or os.environ.get("CIFAR10_DIR") or DEFAULT_DIR)
    X, y, X_test, y_test = read_cifar10(root)
    if num_training + num_validation > len(X) or num_test > len(X_test):
        raise ValueError(f"{root} holds {len(X)} training and {len(X_test)} test images; asked for "
                         f"{num_training} + {num_validation} and {num_test}")
    data = {"X_train": X[:num_training], "y_train": y[:num_training],
            "X_val": X[num_training:num_training + num_validation],
            "y_val": y[num_training:num_training + num_validation],
            "X_test": X_test[:num_test], "y_test": y_test[:num_test]}
    if subtract_mean:
        mean = data["X_train"].mean(axis=0)
        for key in ("X_train", "X_val", "X_test"):
            data[key] = data[key] - mean
    return data


__all__ = ["get_CIFAR10_data", "load_CIFAR10", "load_CIFAR_batch"]
