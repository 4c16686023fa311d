"""Pure forward/backward maths of the normalization layers, CS231n-compatible; any declared
``NormSpec`` through ``norm_forward(spec, x, gamma, beta, param)`` / ``norm_backward``."""

from .batchnorm import (
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
)
from .batchvariants import (
    batchrenorm_backward,
    batchrenorm_forward,
    fold_batchnorm,
    ghost_batchnorm_backward,
    ghost_batchnorm_forward,
)
from .generic import norm_backward, norm_forward
from .groupnorm import spatial_groupnorm_backward, spatial_groupnorm_forward
from .instancenorm import instancenorm_backward, instancenorm_forward, rmsnorm_backward, rmsnorm_forward
from .layernorm import layernorm_backward, layernorm_forward
from ._norm import NormCache

__all__ = [
    "NormCache",
    "norm_forward",
    "norm_backward",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "layernorm_forward",
    "layernorm_backward",
    "spatial_batchnorm_forward",
    "spatial_batchnorm_backward",
    "spatial_groupnorm_forward",
    "spatial_groupnorm_backward",
    "instancenorm_forward",
    "instancenorm_backward",
    "rmsnorm_forward",
    "rmsnorm_backward",
    "batchrenorm_forward",
    "batchrenorm_backward",
    "ghost_batchnorm_forward",
    "ghost_batchnorm_backward",
    "fold_batchnorm",
]
