"""The order a graph is walked in: every node after all of its parents (forward), the
reverse for backpropagation. Works on any node with a ``parents`` sequence, so the
engine and the pictures share it without importing each other."""

from __future__ import annotations

from typing import Protocol, Sequence


class Node(Protocol):
    """A node of a graph (``normgrad.autograd.Tensor`` is one): it knows its parents."""

    parents: Sequence["Node"]


def topological_order(root: Node) -> list[Node]:
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
