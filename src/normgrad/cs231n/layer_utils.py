"""The course's ``layer_utils``: the sandwich layers (and, as the course's does, every name
of ``layers`` and ``fast_layers``)."""

from ..functional.layers import (affine_relu_backward, affine_relu_forward, conv_bn_relu_backward,
                                 conv_bn_relu_forward, conv_relu_backward, conv_relu_forward,
                                 conv_relu_pool_backward, conv_relu_pool_forward)
from . import fast_layers, layers
from .fast_layers import *  # noqa: F403
from .layers import *  # noqa: F403

__all__ = ["affine_relu_forward", "affine_relu_backward", "conv_relu_forward", "conv_relu_backward",
           "conv_bn_relu_forward", "conv_bn_relu_backward", "conv_relu_pool_forward", "conv_relu_pool_backward",
           *layers.__all__, *fast_layers.__all__]
