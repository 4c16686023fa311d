"""normgrad: normalization layers and their gradients, done right.

This module only re-exports the public face (the CS231n-style functions of
``normgrad.functional`` and the gradient checker). Every subpackage is reachable
as an attribute (``normgrad.nn``, ``normgrad.kernels``, ``normgrad.torch``, ...),
imported on first use, so ``import normgrad`` stays light and never imports torch.
"""

import importlib

from . import functional as _functional
from .functional import *  # noqa: F403 - the CS231n-style functions, named in functional.__all__
from .gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, rel_error

__version__ = "0.1.0"

SUBMODULES = ("autograd", "bench", "checkpoint", "classifiers", "core", "cs231n", "data", "data_parallel", "demo",
              "diagnose", "functional", "gradcheck", "kernels", "nn", "optim", "outputs", "solver", "studies",
              "torch")


def __getattr__(name: str):
    """PEP 562: ``normgrad.nn`` and the other subpackages, imported when first used."""
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(SUBMODULES))


__all__ = [*_functional.__all__, "eval_numerical_gradient", "eval_numerical_gradient_array", "rel_error"]
