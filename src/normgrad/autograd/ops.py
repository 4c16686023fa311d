"""The gates of the autograd engine, as two mixins of ``engine.Tensor``.

Each gate computes its value and gives ``_node`` its local-gradient rule twice:
as text (what ``normgrad graph --steps`` prints) and as a function from the
output's gradient to each parent's contribution. That function is written with
Tensor ops, so a backward pass can itself be recorded (double backward).
"""

from __future__ import annotations

from numbers import Real

import numpy as np


class ElementwiseOps:
    """+, -, *, /, **, sqrt, exp, log, relu (NumPy broadcasting; gradients are
    summed back to each operand's shape)."""

    def __add__(self, other):
        a, b = self, self._lift(other)
        return self._node(a.data + b.data, (a, b), "{a} + {b}", ("d{a} += d{out}", "d{b} += d{out}"),
                          lambda g, out: (g, g))

    def __mul__(self, other):
        a, b = self, self._lift(other)
        return self._node(a.data * b.data, (a, b), "{a} * {b}", ("d{a} += d{out} * {b}", "d{b} += d{out} * {a}"),
                          lambda g, out: (g * b, g * a))

    def __neg__(self):
        return self._node(-self.data, (self,), "-{a}", ("d{a} += -d{out}",), lambda g, out: (-g,))

    def __sub__(self, other):
        a, b = self, self._lift(other)
        return self._node(a.data - b.data, (a, b), "{a} - {b}", ("d{a} += d{out}", "d{b} += -d{out}"),
                          lambda g, out: (g, -g))

    def __rsub__(self, other):
        return self._lift(other) - self

    def __truediv__(self, other):
        a, b = self, self._lift(other)
        return self._node(a.data / b.data, (a, b), "{a} / {b}",
                          ("d{a} += d{out} / {b}", "d{b} += -d{out} * {a} / {b}**2"),
                          lambda g, out: (g / b, -g * a / (b * b)))

    def __rtruediv__(self, other):
        return self._lift(other) / self

    __radd__ = __add__
    __rmul__ = __mul__

    def __pow__(self, p):
        if isinstance(p, bool) or not isinstance(p, Real):
            raise TypeError(f"Tensor ** p needs a real number p, got {type(p).__name__}")
        a = self
        rule = "d{a} += d{out} * 2 * {a}" if p == 2 else f"d{{a}} += d{{out}} * {p:g} * {{a}}**{p - 1:g}"
        return self._node(a.data**p, (a,), f"{{a}}**{p:g}", (rule,), lambda g, out: (g * p * a ** (p - 1),))

    def sqrt(self):
        return self._node(np.sqrt(self.data), (self,), "sqrt({a})", ("d{a} += d{out} * 0.5 / {out}",),
                          lambda g, out: (g * 0.5 / out,))

    def exp(self):
        return self._node(np.exp(self.data), (self,), "exp({a})", ("d{a} += d{out} * {out}",),
                          lambda g, out: (g * out,))

    def log(self):
        a = self
        return self._node(np.log(a.data), (a,), "log({a})", ("d{a} += d{out} / {a}",), lambda g, out: (g / a,))

    def relu(self):
        mask = (self.data > 0).astype(self.data.dtype)
        return self._node(self.data * mask, (self,), "relu({a})", ("d{a} += d{out} * ({a} > 0)",),
                          lambda g, out: (g * self._lift(mask),))


class ShapeOps:
    """Reductions (sum, mean), broadcasting, reshape, transpose and matmul."""

    def sum(self, axis=None, keepdims: bool = False):
        a, axes = self, _axes(axis, self.ndim)
        return self._node(a.data.sum(axis=axes, keepdims=keepdims), (a,), f"sum({{a}}, axis={_fmt_axis(axis)})",
                          (f"d{{a}} += d{{out}} broadcast back to {a.shape}",),
                          lambda g, out: (_kept(g, a.shape, axes, keepdims).expand(a.shape),))

    def mean(self, axis=None, keepdims: bool = False):
        a, axes = self, _axes(axis, self.ndim)
        count = int(np.prod([a.shape[i] for i in axes]))
        return self._node(a.data.mean(axis=axes, keepdims=keepdims), (a,), f"mean({{a}}, axis={_fmt_axis(axis)})",
                          (f"d{{a}} += d{{out}} / {count} broadcast back to {a.shape}",),
                          lambda g, out: (_kept(g, a.shape, axes, keepdims).expand(a.shape) * (1.0 / count),))

    def expand(self, shape):
        """Broadcast to ``shape``; the backward sums back to this shape."""
        a, shape = self, tuple(shape)
        if a.shape == shape:
            return a
        return self._node(np.broadcast_to(a.data, shape).copy(), (a,), f"{{a}}.expand{shape}",
                          (f"d{{a}} += d{{out}} summed back to {a.shape}",), lambda g, out: (g,))

    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        a = self
        return self._node(a.data.reshape(shape), (a,), f"{{a}}.reshape{tuple(shape)}",
                          (f"d{{a}} += d{{out}}.reshape{a.shape}",), lambda g, out: (g.reshape(a.shape),))

    def transpose(self, *axes):
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        axes = axes or tuple(reversed(range(self.ndim)))
        inverse = tuple(int(i) for i in np.argsort(axes))
        return self._node(self.data.transpose(axes), (self,), f"{{a}}.transpose{axes}",
                          (f"d{{a}} += d{{out}}.transpose{inverse}",), lambda g, out: (g.transpose(inverse),))

    @property
    def T(self):
        return self.transpose()

    def __matmul__(self, other):
        a, b = self, self._lift(other)
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError(f"matmul needs 2-D operands, got shapes {a.shape} and {b.shape}")
        return self._node(a.data @ b.data, (a, b), "{a} @ {b}", ("d{a} += d{out} @ {b}.T", "d{b} += {a}.T @ d{out}"),
                          lambda g, out: (g @ b.T, a.T @ g))


def _axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % ndim for a in axes))


def _kept(g, shape, axes, keepdims: bool):
    """A reduction's output gradient with the reduced axes back as size 1."""
    return g if keepdims else g.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))


def _fmt_axis(axis) -> str:
    return "all" if axis is None else str(axis)
