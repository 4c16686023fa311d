"""The course's ``classifiers.fc_net``: normgrad's FullyConnectedNet (course semantics: the
weights drawn with ``np.random.randn`` from NumPy's global generator, ``seed`` fixing the
dropout mask), and, as the course's module does, every name of ``layers`` and ``layer_utils``."""

from ...classifiers import FullyConnectedNet
from .. import layer_utils
from ..layer_utils import *  # noqa: F401,F403  the course's module re-exports these too

__all__ = ["FullyConnectedNet", *layer_utils.__all__]
