"""Pure forward/backward maths of the normalization layers, CS231n-compatible."""

from .batchnorm import (
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
)
from .groupnorm import spatial_groupnorm_backward, spatial_groupnorm_forward
from .layernorm import layernorm_backward, layernorm_forward
from ._norm import NormCache

__all__ = [
    "NormCache",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "layernorm_forward",
    "layernorm_backward",
    "spatial_batchnorm_forward",
    "spatial_batchnorm_backward",
    "spatial_groupnorm_forward",
    "spatial_groupnorm_backward",
]
