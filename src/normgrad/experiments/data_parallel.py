"""Data-parallel training of a normgrad MLP with synchronized batch norm.

Every rank builds the same model from the same seed and draws the same global
batch each step; it keeps only its own shard of the batch (shards may be
uneven, even empty). Batch norm uses the global batch's statistics
(``SyncBatchNorm``), the loss of each rank is its share of the global mean, and
the gradients are summed over the ranks (``allreduce_grads``) before an Adam
step, so every rank takes exactly the step that one process would take on the
whole batch. ``train(LocalCommunicator(), ...)`` is that one process.

Used by ``examples/data_parallel.py`` (launched with torchrun) and the tests.
"""

from __future__ import annotations

import numpy as np

from .. import optim
from ..functional.layers import softmax_loss
from ..nn.distributed import Communicator, SyncBatchNorm, allreduce_grads, shard_bounds
from ..nn.layers import Linear, ReLU, Sequential


def build_mlp(in_dim: int, hidden, classes: int, comm: Communicator, seed: int = 0, dtype=np.float64) -> Sequential:
    """Linear -> SyncBatchNorm -> ReLU per hidden width, then a Linear to ``classes`` scores."""
    layers, width = [], in_dim
    for i, h in enumerate(hidden):
        layers += [Linear(width, h, dtype=dtype, seed=seed + i), SyncBatchNorm(h, comm=comm, dtype=dtype), ReLU()]
        width = h
    layers.append(Linear(width, classes, dtype=dtype, seed=seed + len(hidden)))
    return Sequential(*layers)


def _local_loss(scores: np.ndarray, labels: np.ndarray, global_n: int):
    """This shard's share of the global mean cross-entropy, its gradient, and its correct answers."""
    if len(labels) == 0:
        return 0.0, np.zeros_like(scores), 0
    loss, dscores = softmax_loss(scores, labels)
    share = len(labels) / global_n
    return loss * share, dscores * share, int((scores.argmax(axis=1) == labels).sum())


def train(comm: Communicator, X: np.ndarray, y: np.ndarray, *, hidden=(64, 64), steps: int = 50,
          batch_size: int = 64, learning_rate: float = 1e-3, seed: int = 0, shards=None, dtype=np.float64,
          record_params: bool = False, on_step=None) -> dict:
    """Train on this rank's shards of seeded global batches drawn from (X, y).

    - X: (N, D) features, y: (N,) integer labels; the same on every rank
    - shards: rows of each global batch per rank (default: as even as possible)
    - on_step(step, loss, accuracy): called after each step with global figures
    Returns {"losses", "accuracies"} per step (global, the same on every rank),
    the final "model", and per-step flattened "params" when ``record_params``.
    """
    X, y = np.asarray(X, dtype=dtype), np.asarray(y)
    model = build_mlp(X.shape[1], hidden, int(y.max()) + 1, comm, seed, dtype)
    lo, hi = shard_bounds(batch_size, comm.world_size, shards)[comm.rank]
    rng = np.random.default_rng(seed)
    configs = {name: {"learning_rate": learning_rate} for name, _ in model.named_params()}
    out = {"losses": [], "accuracies": [], "params": []}
    for step in range(steps):
        batch = rng.choice(len(X), batch_size, replace=False)[lo:hi]  # same draw on every rank
        scores = model.forward(X[batch])
        loss, dscores, correct = _local_loss(scores, y[batch], batch_size)
        model.backward(dscores)
        loss, correct = allreduce_grads(model, comm, loss, correct)
        for (name, w), (_, dw) in zip(model.named_params(), model.named_grads()):
            w[...], configs[name] = optim.adam(w, dw, configs[name])
        out["losses"].append(loss)
        out["accuracies"].append(correct / batch_size)
        if record_params:
            out["params"].append(np.concatenate([w.ravel() for _, w in model.named_params()]))
        if on_step is not None:
            on_step(step, loss, correct / batch_size)
    out["model"] = model
    return out
