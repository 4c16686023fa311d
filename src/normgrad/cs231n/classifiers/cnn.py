"""The course's ``classifiers.cnn``: normgrad's ThreeLayerConvNet, and every name of
``layers``, ``fast_layers`` and ``layer_utils``, as the course's module has them."""

from ...classifiers import ThreeLayerConvNet
from .. import layer_utils
from ..layer_utils import *  # noqa: F401,F403  the course's module re-exports these too

__all__ = ["ThreeLayerConvNet", *layer_utils.__all__]
