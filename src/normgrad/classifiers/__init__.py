"""CS231n-style classifiers: parameters in ``model.params`` under CS231n names
(W1, b1, gamma1, beta1, ...) and ``loss(X, y=None)`` returning scores at test
time, (loss, grads) in training. The CS231n conventions hold throughout
(``bn_param`` dicts, running = momentum * running + (1 - momentum) * batch).

- ``fc_net.FullyConnectedNet``: affine - [batch/layer norm] - relu - [dropout], L times
- ``cnn.ConvNet``: [conv - spatial batch/group norm - relu - pool] x k - affine
- ``cnn.ThreeLayerConvNet``: conv - relu - pool - affine - relu - affine (the course's)
"""

from .cnn import ConvNet, ThreeLayerConvNet
from .fc_net import FullyConnectedNet

__all__ = ["FullyConnectedNet", "ConvNet", "ThreeLayerConvNet"]
