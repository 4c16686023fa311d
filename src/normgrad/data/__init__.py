"""Data sets made offline or read from local files; never downloaded.

Each loader returns a dict with X_train, y_train, X_val, y_val (and X_test, y_test),
the inputs as float32 and the labels as int64.
"""

from .cifar10 import load_cifar10
from .synthetic import load_digits, load_mnist1d

DATASETS = {"mnist1d": load_mnist1d, "digits": load_digits}

__all__ = ["load_mnist1d", "load_digits", "load_cifar10", "DATASETS"]
