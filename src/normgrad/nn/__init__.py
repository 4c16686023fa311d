"""Modules with parameters, running statistics and a train/eval switch (PyTorch
conventions: weight layouts, momentum, unbiased running variance, state-dict keys).
The CS231n-style models live in ``normgrad.classifiers``."""

from .layers import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential
from .module import Module
from .batch_variants import (
    BatchRenorm1d,
    BatchRenorm2d,
    FrozenBatchNorm2d,
    GhostBatchNorm1d,
    GhostBatchNorm2d,
)
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm1d, InstanceNorm2d, LayerNorm, Norm, RMSNorm
from .tools import fuse_batchnorm, update_bn_stats

__all__ = ["Module", "Norm", "Linear", "ReLU", "Dropout", "Conv2d", "MaxPool2d", "Flatten", "Sequential",
           "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "RMSNorm",
           "BatchRenorm1d", "BatchRenorm2d", "GhostBatchNorm1d", "GhostBatchNorm2d", "FrozenBatchNorm2d",
           "fuse_batchnorm", "update_bn_stats"]
