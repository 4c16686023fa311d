"""A tiny reverse-mode autograd engine over NumPy arrays (micrograd's idea, with arrays).

Each op builds its output ``Tensor`` and attaches a ``_backward`` closure that adds
into its parents' ``.grad``. ``backward()`` sorts the graph once, topologically,
and calls the closures in reverse. The closures are written with the same Tensor
ops, so ``backward(create_graph=True)`` records the backward pass as a graph too
and gradients of gradients work; otherwise they run with recording switched off.

Broadcasting follows NumPy; a gradient is summed back to its operand's shape.
Every node keeps its ``op`` and, per parent, the local-gradient ``rule`` as text,
which is what ``normgrad graph --steps`` prints.
"""

from __future__ import annotations

import contextlib
from numbers import Real

import numpy as np

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


class Tensor:
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

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def __repr__(self) -> str:
        return f"Tensor({self.name}, op={self.op or 'input'}, shape={self.shape})"

    # ----- elementwise arithmetic ---------------------------------------------------
    def __add__(self, other) -> Tensor:
        a, b = self, Tensor._lift(other)
        out = self._make(a.data + b.data, (a, b), "{a} + {b}", ("d{a} += d{out}", "d{b} += d{out}"))

        def backward():
            a._accumulate(out._g)
            b._accumulate(out._g)

        out._backward = backward if out.parents else None
        return out

    def __mul__(self, other) -> Tensor:
        a, b = self, Tensor._lift(other)
        out = self._make(a.data * b.data, (a, b), "{a} * {b}", ("d{a} += d{out} * {b}", "d{b} += d{out} * {a}"))

        def backward():
            a._accumulate(out._g * b)
            b._accumulate(out._g * a)

        out._backward = backward if out.parents else None
        return out

    def __neg__(self) -> Tensor:
        a = self
        out = self._make(-a.data, (a,), "-{a}", ("d{a} += -d{out}",))

        def backward():
            a._accumulate(-out._g)

        out._backward = backward if out.parents else None
        return out

    def __sub__(self, other) -> Tensor:
        a, b = self, Tensor._lift(other)
        out = self._make(a.data - b.data, (a, b), "{a} - {b}", ("d{a} += d{out}", "d{b} += -d{out}"))

        def backward():
            a._accumulate(out._g)
            b._accumulate(-out._g)

        out._backward = backward if out.parents else None
        return out

    def __rsub__(self, other) -> Tensor:
        return Tensor._lift(other) - self

    def __truediv__(self, other) -> Tensor:
        a, b = self, Tensor._lift(other)
        out = self._make(a.data / b.data, (a, b), "{a} / {b}",
                         ("d{a} += d{out} / {b}", "d{b} += -d{out} * {a} / {b}**2"))

        def backward():
            a._accumulate(out._g / b)
            b._accumulate(-out._g * a / (b * b))

        out._backward = backward if out.parents else None
        return out

    def __rtruediv__(self, other) -> Tensor:
        return Tensor._lift(other) / self

    __radd__ = __add__
    __rmul__ = __mul__

    def __pow__(self, p) -> Tensor:
        if isinstance(p, bool) or not isinstance(p, Real):
            raise TypeError(f"Tensor ** p needs a real number p, got {type(p).__name__}")
        a = self
        out = self._make(a.data**p, (a,), f"{{a}}**{p:g}", (_pow_rule(p),))

        def backward():
            a._accumulate(out._g * p * a ** (p - 1))

        out._backward = backward if out.parents else None
        return out

    def sqrt(self) -> Tensor:
        a = self
        out = self._make(np.sqrt(a.data), (a,), "sqrt({a})", ("d{a} += d{out} * 0.5 / {out}",))

        def backward():
            a._accumulate(out._g * 0.5 / out)

        out._backward = backward if out.parents else None
        return out

    def exp(self) -> Tensor:
        a = self
        out = self._make(np.exp(a.data), (a,), "exp({a})", ("d{a} += d{out} * {out}",))

        def backward():
            a._accumulate(out._g * out)

        out._backward = backward if out.parents else None
        return out

    def log(self) -> Tensor:
        a = self
        out = self._make(np.log(a.data), (a,), "log({a})", ("d{a} += d{out} / {a}",))

        def backward():
            a._accumulate(out._g / a)

        out._backward = backward if out.parents else None
        return out

    def relu(self) -> Tensor:
        a = self
        mask = (a.data > 0).astype(a.data.dtype)
        out = self._make(a.data * mask, (a,), "relu({a})", ("d{a} += d{out} * ({a} > 0)",))

        def backward():
            a._accumulate(out._g * Tensor._lift(mask))

        out._backward = backward if out.parents else None
        return out

    # ----- reductions and shapes ----------------------------------------------------
    def sum(self, axis=None, keepdims: bool = False) -> Tensor:
        a = self
        axes = _axes(axis, a.ndim)
        out = self._make(a.data.sum(axis=axes, keepdims=keepdims), (a,), f"sum({{a}}, axis={_fmt_axis(axis)})",
                         (f"d{{a}} += d{{out}} broadcast back to {a.shape}",))

        def backward():
            g = out._g if keepdims else out._g.reshape(_kept_shape(a.shape, axes))
            a._accumulate(g.expand(a.shape))

        out._backward = backward if out.parents else None
        return out

    def mean(self, axis=None, keepdims: bool = False) -> Tensor:
        a = self
        axes = _axes(axis, a.ndim)
        count = int(np.prod([a.shape[i] for i in axes]))
        out = self._make(a.data.mean(axis=axes, keepdims=keepdims), (a,), f"mean({{a}}, axis={_fmt_axis(axis)})",
                         (f"d{{a}} += d{{out}} / {count} broadcast back to {a.shape}",))

        def backward():
            g = out._g if keepdims else out._g.reshape(_kept_shape(a.shape, axes))
            a._accumulate(g.expand(a.shape) * (1.0 / count))

        out._backward = backward if out.parents else None
        return out

    def expand(self, shape) -> Tensor:
        """Broadcast to ``shape``; the backward sums back to this shape."""
        a, shape = self, tuple(shape)
        if a.shape == shape:
            return a
        out = self._make(np.broadcast_to(a.data, shape).copy(), (a,), f"{{a}}.expand{shape}",
                         (f"d{{a}} += d{{out}} summed back to {a.shape}",))

        def backward():
            a._accumulate(out._g)

        out._backward = backward if out.parents else None
        return out

    def reshape(self, *shape) -> Tensor:
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        a = self
        out = self._make(a.data.reshape(shape), (a,), f"{{a}}.reshape{tuple(shape)}",
                         (f"d{{a}} += d{{out}}.reshape{a.shape}",))

        def backward():
            a._accumulate(out._g.reshape(a.shape))

        out._backward = backward if out.parents else None
        return out

    def transpose(self, *axes) -> Tensor:
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        axes = axes or tuple(reversed(range(self.ndim)))
        a, inverse = self, tuple(np.argsort(axes))
        out = self._make(a.data.transpose(axes), (a,), f"{{a}}.transpose{axes}",
                         (f"d{{a}} += d{{out}}.transpose{inverse}",))

        def backward():
            a._accumulate(out._g.transpose(inverse))

        out._backward = backward if out.parents else None
        return out

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def __matmul__(self, other) -> Tensor:
        a, b = self, Tensor._lift(other)
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError(f"matmul needs 2-D operands, got shapes {a.shape} and {b.shape}")
        out = self._make(a.data @ b.data, (a, b), "{a} @ {b}", ("d{a} += d{out} @ {b}.T", "d{b} += {a}.T @ d{out}"))

        def backward():
            a._accumulate(out._g @ b.T)
            b._accumulate(a.T @ out._g)

        out._backward = backward if out.parents else None
        return out

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


def topological_order(root: Tensor) -> list[Tensor]:
    """Every node ``root`` depends on, each after all of its parents."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in reversed(node.parents) if id(p) not in seen)
    return order


def grad(output: Tensor, inputs, grad_output=None, create_graph: bool = False) -> list[Tensor]:
    """Gradients of ``output`` with respect to ``inputs``, leaving no ``.grad`` behind.

    Like ``torch.autograd.grad``: with ``create_graph=True`` the results are part of
    a graph and can be differentiated again.
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


def _axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % ndim for a in axes))


def _kept_shape(shape, axes) -> tuple[int, ...]:
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _unbroadcast(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum ``g`` over the axes along which an operand of ``shape`` was broadcast."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def _pow_rule(p: float) -> str:
    if p == 2:
        return "d{a} += d{out} * 2 * {a}"
    return f"d{{a}} += d{{out}} * {p:g} * {{a}}**{p - 1:g}"


def _fmt_axis(axis) -> str:
    return "all" if axis is None else str(axis)


def _fmt_const(value) -> str:
    arr = np.asarray(value)
    return f"{arr.item():g}" if arr.size == 1 else f"const{arr.shape}"
