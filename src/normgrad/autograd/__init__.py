"""A small reverse-mode autograd engine, and the normalization layers built from its gates.

The same maths as ``normgrad.functional``, drawn as a graph of small gates for
teaching, rendering and cross-checking the hand-derived backward.
"""

from .engine import Tensor, grad, no_grad, topological_order
from .graph import backward_steps, render, to_dot, to_svg, trace
from .norms import batchnorm, groupnorm, layernorm

__all__ = [
    "Tensor",
    "grad",
    "no_grad",
    "topological_order",
    "trace",
    "to_dot",
    "render",
    "to_svg",
    "backward_steps",
    "batchnorm",
    "layernorm",
    "groupnorm",
]
