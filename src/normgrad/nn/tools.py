"""Whole-model tools for batch norm: folding it into the layer before it, and
recomputing its running statistics exactly ("precise BN")."""

from __future__ import annotations

import copy

import numpy as np

from .. import kernels
from ..core.stats import combine_moments
from ..functional.batchvariants import fold_batchnorm
from .layers import Conv2d, Linear, Sequential
from .module import Module
from .norm import _BatchNorm, BatchNorm1d, BatchNorm2d


def fuse_batchnorm(model: Module) -> Module:
    """A copy of ``model`` in eval mode in which every ``Linear`` immediately followed by
    a ``BatchNorm1d``, and every ``Conv2d`` followed by a ``BatchNorm2d``, inside a
    ``Sequential`` (nested ones too), is one layer with folded weights
    (``functional.fold_batchnorm``). Batch norms without running statistics are kept.
    The original model is not changed."""
    fused = copy.deepcopy(model).eval()
    _fuse_into(fused)
    return fused


def _fuse_into(module: Module) -> None:
    for child in module.children().values():
        _fuse_into(child)
    if not isinstance(module, Sequential):
        return
    layers, i = [], 0
    while i < len(module.layers):
        layer = module.layers[i]
        nxt = module.layers[i + 1] if i + 1 < len(module.layers) else None
        pair = (isinstance(layer, Linear) and type(nxt) is BatchNorm1d) or (
            isinstance(layer, Conv2d) and type(nxt) is BatchNorm2d)
        if pair and nxt.track_running_stats:
            _fold(layer, nxt)
            i += 1  # the batch norm is gone
        layers.append(layer)
        i += 1
    module.layers = layers


def _fold(layer: Module, bn: _BatchNorm) -> None:
    gamma, beta = bn._gamma_beta()
    weight = layer.params["weight"]
    w, b = fold_batchnorm(weight, layer.params.get("bias"), gamma, beta, bn.buffers["running_mean"],
                          bn.buffers["running_var"], bn.eps)
    layer.params["weight"], layer.params["bias"] = w, b.astype(weight.dtype)
    layer.grads.clear()


def update_bn_stats(model: Module, batches) -> Module:
    """Set every batch norm's running mean and variance to the exact statistics of all
    the data it sees while ``model`` runs forward (in training mode) over ``batches``:
    the population mean and the unbiased variance of every batch together, merged
    with Chan's formula, whatever the momentum ("precise BN"). Parameters, every other
    buffer (``num_batches_tracked`` included) and the train/eval mode are left as they
    were; if any batch is refused, nothing is changed.

    ``batches``: an iterable of inputs x, or of (x, ...) tuples (the first item is fed).
    Returns ``model``."""
    norms = [m for m in _modules(model) if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return model
    parts = {id(m): [] for m in norms}
    buffers = [(m, {k: a.copy() for k, a in m.buffers.items()}) for m in _modules(model)]
    was_training = model.training

    def record(module, x):
        mean, var = kernels.batchnorm_stats(x)
        count = np.size(x) // np.shape(x)[1]
        parts[id(module)].append((count, mean, var * count))

    handles = [m.register_forward_hook(record) for m in norms]
    try:
        model.train()
        seen = 0
        for batch in batches:
            model.forward(batch[0] if isinstance(batch, tuple) else batch)
            seen += 1
        if not seen:
            raise ValueError("update_bn_stats needs at least one batch")
        precise = [(m, _precise(parts[id(m)])) for m in norms]
    finally:
        for handle in handles:
            handle.remove()
        for m, saved in buffers:
            m.buffers.update(saved)
        model.train(was_training)
    for m, (mean, var) in precise:
        m.buffers["running_mean"] = mean.astype(m.buffers["running_mean"].dtype)
        m.buffers["running_var"] = var.astype(m.buffers["running_var"].dtype)
    return model


def _precise(parts) -> tuple[np.ndarray, np.ndarray]:
    """(mean, unbiased var) of every recorded batch together (Chan's formula)."""
    counts, means, m2s = (np.array([p[i] for p in parts]) for i in range(3))
    total, mean, m2 = combine_moments(counts, means, m2s)
    if total < 2:
        raise ValueError(f"update_bn_stats: {total} value(s) per channel seen; the unbiased variance needs at least 2")
    return mean, m2 / (total - 1)


def _modules(module: Module):
    yield module
    for child in module.children().values():
        yield from _modules(child)


__all__ = ["fuse_batchnorm", "update_bn_stats"]
