"""MNIST-1D, generated locally by the ``mnist1d`` package, and scikit-learn's 8x8 digits."""

from __future__ import annotations

import numpy as np


def _split(X, y, X_test, y_test, n_val: int, seed: int) -> dict[str, np.ndarray]:
    """Hold out n_val training examples (seeded) for validation; standardize with train stats."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    val, train = order[:n_val], order[n_val:]
    mean, std = X[train].mean(axis=0), X[train].std(axis=0) + 1e-8
    norm = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return {"X_train": norm(X[train]), "y_train": y[train].astype(np.int64),
            "X_val": norm(X[val]), "y_val": y[val].astype(np.int64),
            "X_test": norm(X_test), "y_test": y_test.astype(np.int64)}


def load_mnist1d(num_samples: int = 5000, train_split: float = 0.8, n_val: int = 500, seed: int = 0):
    """MNIST-1D: 40-sample 1-D signals of the digits 0-9, made by ``mnist1d.make_dataset``.

    With the defaults: 4000 train (of which ``n_val`` held out for validation) and 1000 test
    examples, 40 features, 10 classes. Generation is deterministic in ``seed`` and offline.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = num_samples, train_split, seed
    d = make_dataset(args)
    return _split(np.asarray(d["x"]), np.asarray(d["y"]), np.asarray(d["x_test"]), np.asarray(d["y_test"]),
                  n_val, seed)


def load_digits(n_test: int = 297, n_val: int = 200, seed: int = 0):
    """scikit-learn's 8x8 handwritten digits (1797 images, shipped with the package):
    64 features, 10 classes; a seeded test split of ``n_test``, then ``n_val`` for validation."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    X, y = d.data.astype(np.float64), d.target
    order = np.random.default_rng(seed + 1).permutation(len(X))
    test, rest = order[:n_test], order[n_test:]
    return _split(X[rest], y[rest], X[test], y[test], n_val, seed)
