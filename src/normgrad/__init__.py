"""normgrad: normalization layers and their gradients, done right.

This module only re-exports the public face; see ``normgrad.functional``.
"""

from .functional import (
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
    spatial_groupnorm_backward,
    spatial_groupnorm_forward,
)
from .gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, rel_error

__version__ = "0.1.0"

__all__ = [
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "layernorm_forward",
    "layernorm_backward",
    "spatial_batchnorm_forward",
    "spatial_batchnorm_backward",
    "spatial_groupnorm_forward",
    "spatial_groupnorm_backward",
    "eval_numerical_gradient",
    "eval_numerical_gradient_array",
    "rel_error",
]
