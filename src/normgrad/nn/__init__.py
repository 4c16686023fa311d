"""Modules with parameters, running statistics and a train/eval switch (PyTorch
conventions: weight layouts, momentum, unbiased running variance, state-dict keys).
The CS231n-style models live in ``normgrad.classifiers``."""

from .layers import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential
from .module import Module
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm

__all__ = ["Module", "Linear", "ReLU", "Dropout", "Conv2d", "MaxPool2d", "Flatten", "Sequential",
           "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm"]
