"""The course's ``classifiers``: fc_net.FullyConnectedNet and cnn.ThreeLayerConvNet."""

from .cnn import ThreeLayerConvNet
from .fc_net import FullyConnectedNet

__all__ = ["FullyConnectedNet", "ThreeLayerConvNet"]
