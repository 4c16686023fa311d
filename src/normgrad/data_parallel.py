"""Data-parallel training of a normgrad MLP with synchronized batch norm.

Every rank builds the same model from the same seed and draws the same global
batch each step; it keeps only its own shard of the batch (shards may be
uneven, even empty). Batch norm uses the global batch's statistics
(``SyncBatchNorm``), the loss of each rank is its share of the global mean, and
the gradients are summed over the ranks (``allreduce_grads``) before an Adam
step, so every rank takes exactly the step that one process would take on the
whole batch. ``train(LocalCommunicator(), ...)`` is that one process.

The step is the Solver's (``Solver.step``): ``ShardedModel`` gives it the model of one
rank in the Solver's model interface. Above the Solver in the layers; used by
``examples/data_parallel.py`` (launched with torchrun) and the tests.
"""

from __future__ import annotations

import numpy as np

from .functional.layers import softmax_loss
from .nn.distributed import Communicator, SyncBatchNorm, allreduce_grads, shard_bounds
from .nn.layers import Linear, ReLU, Sequential
from .solver import Solver


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


class ShardedModel:
    """One rank's part of a data-parallel model, as a Solver model: ``params`` (the
    module's, by qualified name) and ``loss(X, y)`` on a global batch, of which this rank
    computes rows ``[lo, hi)``; the loss, the gradients and ``correct`` (the right
    answers) come back summed over the ranks."""

    def __init__(self, module: Sequential, comm: Communicator, lo: int, hi: int):
        self.module, self.comm, self.lo, self.hi, self.correct = module, comm, lo, hi, 0
        self.params = dict(module.named_params())

    def load_params(self) -> Sequential:
        """Copy ``params`` into the module (the Solver replaces their arrays); the module."""
        for name, w in self.module.named_params():
            if w is not self.params[name]:
                w[...] = self.params[name]
        return self.module

    def loss(self, X, y=None):
        self.load_params()
        if y is None:
            return self.module.eval().forward(X)
        self.module.train()
        scores = self.module.forward(X[self.lo:self.hi])
        loss, dscores, correct = _local_loss(scores, y[self.lo:self.hi], len(y))
        self.module.backward(dscores)
        loss, self.correct = allreduce_grads(self.module, self.comm, loss, correct)
        return loss, {name: dw.copy() for name, dw in self.module.named_grads()}


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
    lo, hi = shard_bounds(batch_size, comm.world_size, shards)[comm.rank]
    model = ShardedModel(build_mlp(X.shape[1], hidden, int(y.max()) + 1, comm, seed, dtype), comm, lo, hi)
    solver = Solver(model, {"X_train": X, "y_train": y, "X_val": X, "y_val": y}, update_rule="adam",
                    optim_config={"learning_rate": learning_rate}, batch_size=batch_size, verbose=False)
    rng = np.random.default_rng(seed)
    out = {"losses": [], "accuracies": [], "params": []}
    for step in range(steps):
        loss = solver.step(rng.choice(len(X), batch_size, replace=False))  # the same draw on every rank
        out["losses"].append(loss)
        out["accuracies"].append(model.correct / batch_size)
        if record_params:
            out["params"].append(np.concatenate([w.ravel() for w in model.params.values()]))
        if on_step is not None:
            on_step(step, loss, model.correct / batch_size)
    out["model"] = model.load_params().train()
    return out
