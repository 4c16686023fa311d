"""What the checker can say: the known mistakes (stable ids with an explanation and a fix),
and the per-function report that carries them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# id -> (explanation, fix). In a fix, the first `backticked` code is what to write and a
# `backticked` code after "not" is what the mistaken code has (tests apply them to real files).
CATALOG = {
    "not-implemented": ("the function is not written yet (it returns None, raises NotImplementedError, stops at "
                        "an `assert False`, or returns zeros, a constant or its input unchanged)",
                        "fill in the TODO block of the function"),
    "unbiased-variance": ("the batch variance is divided by N-1 instead of N",
                          "`x.var(axis=0)`, not `x.var(axis=0, ddof=1)`: batch norm normalizes with the biased (ddof=0) "
                          "variance"),
    "running-var-unbiased": ("the running variance averages the unbiased (N-1) batch variance",
                             "average the same biased variance the forward pass uses: "
                             "`momentum * running_var + (1 - momentum) * var`, not "
                             "`momentum * running_var + (1 - momentum) * var * N / (N - 1)`"),
    "std-of-variance": ("the running variance averages the batch's standard deviation, not its variance",
                        "`running_var = momentum * running_var + (1 - momentum) * var`, not "
                        "`running_var = momentum * running_var + (1 - momentum) * np.sqrt(var)`"),
    "running-stats-init": ("a bn_param without running_mean / running_var is not handled as the starter code "
                           "does (it starts them at zeros)",
                           "`running_mean = bn_param.get(\"running_mean\", np.zeros(D, dtype=x.dtype))`, not "
                           "`running_mean = bn_param[\"running_mean\"]`, and "
                           "`running_var = bn_param.get(\"running_var\", np.zeros(D, dtype=x.dtype))`, not "
                           "`running_var = bn_param[\"running_var\"]`"),
    "running-stats-scalar": ("the running statistics are averaged over every axis of x into one number",
                             "average per-feature statistics: `x.mean(axis=0)`, not `np.mean(x)`, and `x.var(axis=0)`, "
                             "not `np.var(x)`"),
    "missing-mean-path": ("dx lacks the gradient that flows through the mean (mu depends on every x)",
                          "`dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / np.sqrt(var + eps)`"
                          ": its `- dxhat.mean(axis=0)` is the path through the mean (axis=1, keepdims=True for "
                          "layer norm)"),
    "missing-variance-path": ("dx lacks the gradient that flows through the variance",
                              "`dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / np.sqrt(var + eps)`"
                              ": its `- xhat * (dxhat * xhat).mean(axis=0)` is the path through the variance "
                              "(axis=1, keepdims=True for layer norm)"),
    "missing-gamma-in-dx": ("dx is computed from dout instead of dxhat = dout * gamma",
                            "start the backward with `dxhat = dout * gamma`, not `dxhat = dout`"),
    "gamma-outside-sums": ("gamma is factored out of the backward's sums, but gamma varies along the axis they sum "
                           "over (layer norm sums over the features)",
                           "multiply by gamma first, then sum: `dx = (dout * gamma - (dout * gamma).mean(axis=1, "
                           "keepdims=True) - xhat * (dout * gamma * xhat).mean(axis=1, keepdims=True)) / "
                           "np.sqrt(var + eps)`"),
    "variance-path-uncentred": ("the gradient through the variance uses x where it needs x - mu",
                                "`xhat * (dxhat * xhat).sum(axis=0)`, not `x * ivar * (dxhat * x * ivar).sum(axis=0)`: the "
                                "variance path carries x - mu, as xhat does"),
    "wrong-axis": ("a statistic or a sum is taken over the wrong axis",
                   "reduce over the axes the norm normalizes over (the detail says which ones yours uses): "
                   "axis=0 for batch norm of (N, D), axis=(0, 2, 3) for spatial batch norm, and for layer norm "
                   "`.mean(axis=1, keepdims=True)`, not `.mean(axis=0, keepdims=True)`"),
    "not-centred": ("x is not centred: the mean is never subtracted",
                    "`(x - mu) / np.sqrt(var + eps)`, not `x / np.sqrt(var + eps)`"),
    "variance-not-centred": ("the variance is the mean of x**2, not of (x - mu)**2",
                             "`np.mean((x - mu) ** 2, axis=0)`, not `np.mean(x ** 2, axis=0)`"),
    "groups-of-size-G": ("group norm splits the channels into groups of G channels instead of G groups",
                         "`x.reshape(N, G, C // G, H, W)`, not `x.reshape(N, C // G, G, H, W)`, with the statistics "
                         "over axes (2, 3, 4)"),
    "gamma-beta-mapping": ("gamma and beta reach the wrong elements: each must scale and shift one whole channel",
                           "give every element its channel's gamma and beta: `np.repeat(gamma.ravel(), H * W)`, not "
                           "`np.tile(gamma.ravel(), H * W)`, and `np.repeat(beta.ravel(), H * W)`, not "
                           "`np.tile(beta.ravel(), H * W)`; or apply `gamma.reshape(1, C, 1, 1)` to the "
                           "normalized x in its own (N, C, H, W) shape"),
    "values-misplaced": ("the output has the right values in the wrong places: a transpose or swapaxes is not undone "
                         "by its inverse",
                         "undo exactly what you did: move C last with `x.transpose(0, 2, 3, 1).reshape(-1, C)`, not "
                         "`x.swapaxes(1, 3).reshape(-1, C)` (which swaps H and W too), and come back with "
                         "`.reshape(N, H, W, C).transpose(0, 3, 1, 2)`"),
    "reshape-without-transpose": ("spatial batch norm reshapes (N, C, H, W) straight to (N*H*W, C), which mixes "
                                  "channels and positions",
                                  "move C last first: `x.transpose(0, 2, 3, 1).reshape(-1, C)`, not "
                                  "`x.reshape(N * H * W, C)`, and back with "
                                  "`out.reshape(N, H, W, C).transpose(0, 3, 1, 2)`, not `out.reshape(N, C, H, W)`"),
    "eps-outside-sqrt": ("eps is added outside the square root",
                         "normalize by `np.sqrt(var + eps)`, not `np.sqrt(var) + eps`"),
    "eps-missing": ("eps is left out: the normalization divides by sqrt(var)",
                    "normalize by `np.sqrt(var + eps)`, not `np.sqrt(var)`, with eps from the param dict"),
    "eps-value": ("eps is not the one the param dict passes (a constant of your own, or a multiple of it)",
                  "use the param dict's eps: `eps = bn_param.get(\"eps\", 1e-5)`, not `eps = 1e-3` (ln_param or "
                  "gn_param in layer and group norm)"),
    "drops-affine": ("the output is the normalized xhat: gamma and beta are not applied",
                     "`out = gamma * xhat + beta`, not `out = xhat`"),
    "momentum-reversed": ("the running average weights the new batch by momentum",
                          "`momentum * running_mean + (1 - momentum) * mu`, not "
                          "`(1 - momentum) * running_mean + momentum * mu`, and "
                          "`momentum * running_var + (1 - momentum) * var`, not "
                          "`(1 - momentum) * running_var + momentum * var`"),
    "no-running-update": ("train mode does not update running_mean / running_var in bn_param",
                          "store the updated running statistics back in train mode: "
                          "`bn_param[\"running_mean\"], bn_param[\"running_var\"] = running_mean, running_var`"),
    "test-uses-batch-stats": ("test mode normalizes with the batch's own statistics",
                              "in test mode use the running statistics: "
                              "`gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta`, not "
                              "`gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + beta`"),
    "test-drops-affine": ("test mode returns the normalized x without gamma and beta",
                          "in test mode too: `gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta`, not "
                          "`(x - running_mean) / np.sqrt(running_var + eps)`"),
    "test-divides-by-var": ("test mode divides by the running variance instead of its square root",
                            "in test mode divide by `np.sqrt(running_var + eps)`, not `(running_var + eps)`"),
    "test-beta-sign": ("test mode subtracts beta instead of adding it",
                       "`gamma * xhat + beta`, not `gamma * xhat - beta`"),
    "dgamma-not-summed": ("dgamma is not summed over the batch: it has x's shape",
                          "`dgamma = (dout * xhat).sum(axis=0)`, not `dgamma = dout * xhat` (axis=(0, 2, 3) for "
                          "spatial norms): down to gamma's shape"),
    "dbeta-not-summed": ("dbeta is not summed over the batch: it has x's shape",
                         "`dbeta = dout.sum(axis=0)`, not `dbeta = dout` (axis=(0, 2, 3) for spatial norms): down to "
                         "beta's shape"),
    "dgamma-uses-x": ("dgamma multiplies dout by x instead of the normalized xhat",
                      "`(dout * xhat).sum(0)`, not `(dout * x).sum(0)`"),
    "extra-dimensions": ("an x-shaped output has extra dimensions (a keepdims=True, a reshape or a broadcast of "
                         "gamma against the groups left over)",
                         "bring the output back to x's shape (`out.reshape(N, C, H, W)`); with gamma and beta of shape "
                         "(1, C, 1, 1), as the notebook passes them, use `gamma * xhat + beta`, not "
                         "`gamma[:, None, None] * xhat + beta[:, None, None]`"),
    "inputs-modified": ("an input array was modified in place",
                        "work on new arrays: `x = x - mu`, not `x -= mu`; never write into x, gamma, beta or dout"),
    "wrong-shape": ("an output does not have the expected shape",
                    "out and dx have x's shape; dgamma and dbeta have gamma's shape"),
}

# status -> the outcome it counts as in the summary
OUTCOMES = {"ok": "ok", "unfinished": "not implemented yet", "skipped": "not checked",
            "wrong": "wrong", "error": "wrong", "timeout": "wrong", "crash": "wrong"}


@dataclass
class Diagnosis:
    id: str
    explanation: str
    fix: str
    detail: str = ""


@dataclass
class FunctionReport:
    name: str
    status: str  # ok | wrong | unfinished | error | timeout | crash | skipped
    errors: dict[str, float] = field(default_factory=dict)  # error on the output's own scale, worst case
    notebook: dict[str, float] = field(default_factory=dict)  # the notebook's rel_error, on its kind of case
    diagnoses: list[Diagnosis] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    exception: dict | None = None
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def outcome(self) -> str:
        """'ok', 'wrong', 'not implemented yet' or 'not checked'."""
        return OUTCOMES[self.status]

    def diagnose(self, id_: str, detail: str = "") -> None:
        if id_ not in {d.id for d in self.diagnoses}:
            explanation, fix = CATALOG[id_]
            self.diagnoses.append(Diagnosis(id_, explanation, fix, detail))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def to_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "status": self.status, "outcome": self.outcome,
                "errors": {k: (None if not np.isfinite(v) else v) for k, v in self.errors.items()},
                "notebook_rel_error": {k: (None if not np.isfinite(v) else v) for k, v in self.notebook.items()},
                "diagnoses": [d.id for d in self.diagnoses],
                "details": [{"id": d.id, "explanation": d.explanation, "fix": d.fix, "detail": d.detail}
                            for d in self.diagnoses],
                "notes": self.notes, "exception": self.exception}
