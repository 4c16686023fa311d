"""Modules with parameters, running statistics and a train/eval switch (PyTorch conventions),
and the CS231n-style models."""

from .layers import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential
from .models import ConvNet, FullyConnectedNet
from .module import Module
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm

__all__ = ["Module", "Linear", "ReLU", "Dropout", "Conv2d", "MaxPool2d", "Flatten", "Sequential",
           "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "FullyConnectedNet", "ConvNet"]
