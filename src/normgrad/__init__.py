"""normgrad: normalization layers and their gradients, done right.

This module only re-exports the public face (the CS231n-style functions of
``normgrad.functional``, ``NormSpec`` to declare a norm, and the gradient checker).
Every subpackage is reachable as an attribute (``normgrad.nn``, ``normgrad.kernels``,
``normgrad.torch``, ...), imported on first use, so ``import normgrad`` stays light and never imports torch.
"""

import importlib

from .core.specs import NormSpec
from .functional import (
    NormCache, norm_forward, norm_backward, batchnorm_forward, batchnorm_backward, batchnorm_backward_alt,
    layernorm_forward, layernorm_backward, spatial_batchnorm_forward, spatial_batchnorm_backward,
    spatial_groupnorm_forward, spatial_groupnorm_backward, instancenorm_forward, instancenorm_backward,
    rmsnorm_forward, rmsnorm_backward, batchrenorm_forward, batchrenorm_backward, ghost_batchnorm_forward,
    ghost_batchnorm_backward, fold_batchnorm,
)
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


__all__ = [
    "NormCache", "norm_forward", "norm_backward", "batchnorm_forward", "batchnorm_backward",
    "batchnorm_backward_alt", "layernorm_forward", "layernorm_backward", "spatial_batchnorm_forward",
    "spatial_batchnorm_backward", "spatial_groupnorm_forward", "spatial_groupnorm_backward",
    "instancenorm_forward", "instancenorm_backward", "rmsnorm_forward", "rmsnorm_backward", "batchrenorm_forward",
    "batchrenorm_backward", "ghost_batchnorm_forward", "ghost_batchnorm_backward", "fold_batchnorm", "NormSpec",
    "eval_numerical_gradient", "eval_numerical_gradient_array", "rel_error",
]
