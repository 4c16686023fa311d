"""The Module base: parameters, gradients, buffers, train/eval, state dicts.

Every module is a forward/backward pair: ``forward(x)`` keeps what its
``backward(dout)`` needs, and ``backward`` returns dx and fills ``grads`` (one
array per entry of ``params``, same names, overwritten by each backward).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class Module:
    """Base class. Subclasses fill ``params``/``buffers`` and define forward/backward.

    - params: name -> trainable array (updated in place or replaced by optimizers)
    - grads: name -> gradient of the last backward, same shapes as params
    - buffers: name -> non-trainable state saved in the state dict (running stats)
    - training: train() / eval() switch
    """

    def __init__(self):
        self.params: dict[str, np.ndarray] = OrderedDict()
        self.grads: dict[str, np.ndarray] = OrderedDict()
        self.buffers: dict[str, np.ndarray] = OrderedDict()
        self.training = True

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def children(self) -> dict[str, "Module"]:
        return {}

    def train(self, mode: bool = True) -> "Module":
        self.training = bool(mode)
        for child in self.children().values():
            child.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def named_params(self, prefix: str = ""):
        """(qualified name, array) for every parameter, children included, PyTorch order."""
        for name, value in self.params.items():
            yield prefix + name, value
        for cname, child in self.children().items():
            yield from child.named_params(f"{prefix}{cname}.")

    def named_grads(self, prefix: str = ""):
        for name, value in self.grads.items():
            yield prefix + name, value
        for cname, child in self.children().items():
            yield from child.named_grads(f"{prefix}{cname}.")

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameters then buffers, children after, with PyTorch's key names."""
        state = OrderedDict()
        self._state_into(state, "")
        return state

    def _state_into(self, state, prefix):
        for name, value in self.params.items():
            state[prefix + name] = np.array(value, copy=True)
        for name, value in self.buffers.items():
            state[prefix + name] = np.array(value, copy=True)
        for cname, child in self.children().items():
            child._state_into(state, f"{prefix}{cname}.")

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Load arrays (NumPy arrays, or anything ``np.asarray`` takes, such as CPU
        torch tensors) by name; shapes must match. With ``strict``, the key sets must
        be equal. Nothing is changed unless every entry is valid."""
        own = self.state_dict()
        given = {k: np.asarray(v.detach() if hasattr(v, "detach") else v) for k, v in state.items()}
        missing, unexpected = sorted(set(own) - set(given)), sorted(set(given) - set(own))
        if strict and (missing or unexpected):
            raise KeyError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        for key, value in given.items():
            if key in own and value.shape != own[key].shape:
                raise ValueError(f"state dict entry {key!r} has shape {value.shape}, expected {own[key].shape}")
            if key in own and not np.isfinite(value.astype(np.float64)).all():
                raise ValueError(f"state dict entry {key!r} contains NaN or Inf")
        self._load_from(given, "")

    def _load_from(self, given, prefix):
        for store in (self.params, self.buffers):
            for name in store:
                if prefix + name in given:
                    store[name] = given[prefix + name].astype(store[name].dtype, copy=True)
        for cname, child in self.children().items():
            child._load_from(given, f"{prefix}{cname}.")
