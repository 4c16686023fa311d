"""The course's ``layer_utils``: the sandwich layers (and, as the course's does, every name
of ``layers`` and ``fast_layers``)."""

from ..functional.layers import (affine_relu_backward, affine_relu_forward, conv_bn_relu_backward,
                                 conv_bn_relu_forward, conv_relu_backward, conv_relu_forward,
                                 conv_relu_pool_backward, conv_relu_pool_forward)
from .fast_layers import (
    conv_forward_fast, conv_backward_fast, conv_forward_im2col, conv_backward_im2col, conv_forward_strides,
    conv_backward_strides, max_pool_forward_fast, max_pool_backward_fast, max_pool_forward_reshape,
    max_pool_backward_reshape, max_pool_forward_im2col, max_pool_backward_im2col,
)
from .layers import (
    affine_forward, affine_backward, relu_forward, relu_backward, softmax_loss, batchnorm_forward,
    batchnorm_backward, batchnorm_backward_alt, layernorm_forward, layernorm_backward, dropout_forward,
    dropout_backward, conv_forward_naive, conv_backward_naive, max_pool_forward_naive, max_pool_backward_naive,
    spatial_batchnorm_forward, spatial_batchnorm_backward, spatial_groupnorm_forward, spatial_groupnorm_backward,
)

__all__ = [
    "affine_relu_forward", "affine_relu_backward", "conv_relu_forward", "conv_relu_backward",
    "conv_bn_relu_forward", "conv_bn_relu_backward", "conv_relu_pool_forward", "conv_relu_pool_backward",
    "affine_forward", "affine_backward", "relu_forward", "relu_backward", "softmax_loss", "batchnorm_forward",
    "batchnorm_backward", "batchnorm_backward_alt", "layernorm_forward", "layernorm_backward", "dropout_forward",
    "dropout_backward", "conv_forward_naive", "conv_backward_naive", "max_pool_forward_naive",
    "max_pool_backward_naive", "spatial_batchnorm_forward", "spatial_batchnorm_backward",
    "spatial_groupnorm_forward", "spatial_groupnorm_backward", "conv_forward_fast", "conv_backward_fast",
    "conv_forward_im2col", "conv_backward_im2col", "conv_forward_strides", "conv_backward_strides",
    "max_pool_forward_fast", "max_pool_backward_fast", "max_pool_forward_reshape", "max_pool_backward_reshape",
    "max_pool_forward_im2col", "max_pool_backward_im2col",
]
