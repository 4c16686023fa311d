"""The course's ``layers``: normgrad.functional under the course's names."""

from ..functional import (batchnorm_backward, batchnorm_backward_alt, batchnorm_forward, layernorm_backward,
                          layernorm_forward, spatial_batchnorm_backward, spatial_batchnorm_forward,
                          spatial_groupnorm_backward, spatial_groupnorm_forward)
from ..functional.layers import (affine_backward, affine_forward, dropout_backward, dropout_forward, relu_backward,
                                 relu_forward, softmax_loss)
from ..functional.layers import conv_backward as conv_backward_naive
from ..functional.layers import conv_forward as conv_forward_naive
from ..functional.layers import max_pool_backward as max_pool_backward_naive
from ..functional.layers import max_pool_forward as max_pool_forward_naive

__all__ = ["affine_forward", "affine_backward", "relu_forward", "relu_backward", "softmax_loss",
           "batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt", "layernorm_forward",
           "layernorm_backward", "dropout_forward", "dropout_backward", "conv_forward_naive", "conv_backward_naive",
           "max_pool_forward_naive", "max_pool_backward_naive", "spatial_batchnorm_forward",
           "spatial_batchnorm_backward", "spatial_groupnorm_forward", "spatial_groupnorm_backward"]
