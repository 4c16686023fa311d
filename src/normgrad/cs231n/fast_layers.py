"""The course's ``fast_layers``, without a Cython extension to build: normgrad's convolution
is im2col through a strided view and one matrix product, and its max pooling works on
strided windows, so the "naive" and "fast" names are the same functions."""

from ..functional.layers import conv_backward, conv_forward, max_pool_backward, max_pool_forward

conv_forward_fast = conv_forward_im2col = conv_forward_strides = conv_forward
conv_backward_fast = conv_backward_im2col = conv_backward_strides = conv_backward
max_pool_forward_fast = max_pool_forward_reshape = max_pool_forward_im2col = max_pool_forward
max_pool_backward_fast = max_pool_backward_reshape = max_pool_backward_im2col = max_pool_backward

__all__ = ["conv_forward_fast", "conv_backward_fast", "conv_forward_im2col", "conv_backward_im2col",
           "conv_forward_strides", "conv_backward_strides", "max_pool_forward_fast", "max_pool_backward_fast",
           "max_pool_forward_reshape", "max_pool_backward_reshape", "max_pool_forward_im2col",
           "max_pool_backward_im2col"]
