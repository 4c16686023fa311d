"""A tiny reverse-mode autograd engine over NumPy arrays (micrograd's idea, with arrays).

Each op (the gates, in ``ops.py``) builds its output ``Tensor`` and attaches a
``_backward`` closure that adds into its parents' gradients. ``backward()`` sorts the graph once, topologically,
and calls the closures in reverse. The closures are written with the same Tensor
ops, so ``backward(create_graph=True)`` records the backward pass as a graph too
and gradients of gradients work; otherwise they run with recording switched off.

Broadcasting follows NumPy; a gradient is summed back to its operand's shape.
Every node keeps its ``op`` and, per parent, the local-gradient ``rule`` as text,
which is what ``normgrad graph --steps`` prints.
"""

from __future__ import annotations

import contextlib
import numpy as np

from .ops import ElementwiseOps, ShapeOps
from .order import topological_order

_recording = True


@contextlib.contextmanager
def no_grad():
    """Within this block, ops build no graph (their outputs are constants)."""
    global _recording
    saved, _recording = _recording, False
    try:
        yield
    finally:
        _recording = saved


class Tensor(ElementwiseOps, ShapeOps):
    """A node of the graph: a float array, its gradient, and how it was made.

    - data: the value (float64 unless given float32)
    - grad: a Tensor of data's shape after ``backward``, else None
    - name: label for pictures and walk-throughs (``named`` sets it)
    - op: the gate that made it, as a formula over its parents '{a} * {b}' ('' for inputs)
    - parents: the Tensors it was computed from
    - rules: per parent, the local-gradient rule as text
    """

    _count = 0

    def __init__(self, data, name: str | None = None):
        arr = np.asarray(data)
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float64)
        self.data = arr
        self.grad: Tensor | None = None
        Tensor._count += 1
        self.name = name or f"t{Tensor._count}"
        self.op = ""
        self.parents: tuple[Tensor, ...] = ()
        self.rules: tuple[str, ...] = ()
        self.const = False
        self._backward = None
        self._g: Tensor | None = None  # gradient gathered by the backward pass under way

    # ----- construction -------------------------------------------------------------
    def named(self, name: str) -> Tensor:
        self.name = name
        return self

    @staticmethod
    def _lift(value) -> Tensor:
        """Wrap a Python number or array as a constant leaf."""
        if isinstance(value, Tensor):
            return value
        t = Tensor(value, name=_fmt_const(value))
        t.const = True
        return t

    @staticmethod
    def _make(data, parents, op, rules) -> Tensor:
        """The output node of an op; it records its parents only while recording."""
        out = Tensor(data)
        if _recording:
            out.op, out.parents, out.rules = op, tuple(parents), tuple(rules)
        return out

    def _node(self, data, parents, op, rules, grads) -> Tensor:
        """The output node of a gate. ``grads(g, out)`` gives each parent's share of
        the output's gradient ``g``; it runs in the backward pass, in the closure."""
        out = self._make(data, parents, op, rules)
        if out.parents:
            def backward():
                for parent, share in zip(parents, grads(out._g, out)):
                    parent._accumulate(share)

            out._backward = backward
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def __repr__(self) -> str:
        return f"Tensor({self.name}, op={self.op or 'input'}, shape={self.shape})"

    def _repr_svg_(self) -> str:
        """In a notebook, a Tensor shows as the picture of the graph that made it."""
        from .graph import to_svg

        return to_svg(self)

    # ----- backward -----------------------------------------------------------------
    def _accumulate(self, g: Tensor) -> None:
        """Add ``g`` (summed back to this shape if it was broadcast) into this pass's gradient."""
        if self.const:
            return
        g = _unbroadcast(g, self.shape)
        self._g = g if self._g is None else self._g + g

    def zero_grad(self) -> None:
        for node in topological_order(self):
            node.grad = None

    def backward(self, grad=None, create_graph: bool = False) -> None:
        """Fill ``.grad`` of every node this one depends on (adding to what is there).

        - grad: upstream gradient of this node's shape; default ones (scalars only)
        - create_graph: record the backward pass so its results can be differentiated
        """
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"grad must be given for a non-scalar output of shape {self.shape}")
            grad = np.ones_like(self.data)
        seed = grad if isinstance(grad, Tensor) else Tensor(np.asarray(grad, dtype=self.data.dtype))
        if seed.shape != self.shape:
            raise ValueError(f"grad must have the output's shape {self.shape}, got {seed.shape}")
        order = topological_order(self)
        for node in order:
            node._g = None
        context = contextlib.nullcontext() if create_graph else no_grad()
        with context:
            self._accumulate(seed)
            for node in reversed(order):
                if node._backward is not None and node._g is not None:
                    node._backward()
            for node in order:
                if node._g is not None:
                    node.grad = node._g if node.grad is None else node.grad + node._g
                node._g = None


def grad(output: Tensor, inputs, grad_output=None, create_graph: bool = False) -> list[Tensor]:
    """Gradients of ``output`` with respect to ``inputs``, leaving no ``.grad`` behind.

    Like ``torch.autograd.grad``: with ``create_graph=True`` the results are part of
    a graph and can be differentiated again.

    Inputs:
    - output: a Tensor of any shape
    - inputs: Tensors the output depends on
    - grad_output: the upstream gradient, of output's shape (None: 1, for a scalar output)
    Returns a list of Tensors, one per input, each of that input's shape.
    """
    inputs = list(inputs)
    nodes = topological_order(output)
    saved = {id(n): n.grad for n in nodes}
    for n in nodes:
        n.grad = None
    try:
        output.backward(grad_output, create_graph=create_graph)
        results = []
        for t in inputs:
            g = t.grad if t.grad is not None else Tensor(np.zeros_like(t.data))
            results.append(g)
    finally:
        for n in nodes:
            n.grad = saved[id(n)]
    return results


def _unbroadcast(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum ``g`` over the axes along which an operand of ``shape`` was broadcast."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def _fmt_const(value) -> str:
    arr = np.asarray(value)
    return f"{arr.item():g}" if arr.size == 1 else f"const{arr.shape}"
