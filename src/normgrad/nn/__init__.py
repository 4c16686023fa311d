"""Modules with parameters, running statistics and a train/eval switch (PyTorch conventions)."""

from .module import Module
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm

__all__ = ["Module", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm"]
