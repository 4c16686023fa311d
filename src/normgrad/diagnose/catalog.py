"""What the checker can say: the known mistakes (stable ids with an explanation and a fix),
and the per-function report that carries them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CATALOG = {
    "not-implemented": ("the function is not written yet (it returns None, raises NotImplementedError, or returns "
                        "zeros, a constant or its input unchanged)",
                        "fill in the TODO block of the function"),
    "unbiased-variance": ("the batch variance is divided by N-1 instead of N",
                          "use x.var(axis=...) (ddof=0): batch norm normalizes with the biased variance"),
    "running-var-unbiased": ("the running variance averages the unbiased (N-1) batch variance",
                             "CS231n's convention averages the same biased variance the forward pass uses"),
    "std-of-variance": ("the running variance averages the batch's standard deviation, not its variance",
                        "running_var = momentum * running_var + (1 - momentum) * var, with var (not sqrt(var))"),
    "running-stats-init": ("a bn_param without running_mean / running_var is not handled as the starter code "
                           "does (it starts them at zeros)",
                           "running_mean = bn_param.get('running_mean', np.zeros(D, dtype=x.dtype)), and the "
                           "same for running_var"),
    "missing-mean-path": ("dx lacks the gradient that flows through the mean (mu depends on every x)",
                          "add dmu / N to dx, with dmu = -sum(dxhat * ivar) (+ dvar * mean(-2 * xmu))"),
    "missing-variance-path": ("dx lacks the gradient that flows through the variance",
                              "add dvar * 2 * xmu / N to dx, with dvar = sum(dxhat * xmu) * -0.5 * ivar**3"),
    "missing-gamma-in-dx": ("dx is computed from dout instead of dxhat = dout * gamma",
                            "start the backward with dxhat = dout * gamma"),
    "wrong-axis": ("a statistic or a sum is taken over the wrong axis",
                   "reduce over the batch axes the norm normalizes over (axis=0 for batch norm of (N, D))"),
    "reshape-without-transpose": ("spatial batch norm reshapes (N, C, H, W) straight to (N*H*W, C), which mixes "
                                  "channels and positions",
                                  "move C last first: x.transpose(0, 2, 3, 1).reshape(-1, C), and back with "
                                  ".reshape(N, H, W, C).transpose(0, 3, 1, 2)"),
    "eps-outside-sqrt": ("eps is added outside the square root",
                         "normalize by np.sqrt(var + eps), not np.sqrt(var) + eps"),
    "eps-missing": ("eps is left out: the normalization divides by sqrt(var)",
                    "normalize by np.sqrt(var + eps), with eps from the param dict"),
    "drops-affine": ("the output is the normalized xhat: gamma and beta are not applied",
                     "out = gamma * xhat + beta"),
    "momentum-reversed": ("the running average weights the new batch by momentum",
                          "running = momentum * running + (1 - momentum) * batch_statistic"),
    "no-running-update": ("train mode does not update running_mean / running_var in bn_param",
                          "store the updated running statistics back into bn_param in train mode"),
    "test-uses-batch-stats": ("test mode normalizes with the batch's own statistics",
                              "in test mode use bn_param['running_mean'] and bn_param['running_var']"),
    "test-drops-affine": ("test mode returns the normalized x without gamma and beta",
                          "in test mode too, out = gamma * xhat + beta"),
    "test-divides-by-var": ("test mode divides by the running variance instead of its square root",
                            "in test mode divide by np.sqrt(running_var + eps)"),
    "dgamma-not-summed": ("dgamma is not summed over the batch: it has x's shape",
                          "dgamma = np.sum(dout * xhat, axis=...) down to gamma's shape"),
    "dbeta-not-summed": ("dbeta is not summed over the batch: it has x's shape",
                         "dbeta = np.sum(dout, axis=...) down to beta's shape"),
    "dgamma-uses-x": ("dgamma multiplies dout by x instead of the normalized xhat",
                      "dgamma = np.sum(dout * xhat, axis=...)"),
    "extra-dimensions": ("an x-shaped output has extra dimensions (a keepdims=True or a reshape left over)",
                         "reshape the result back to x's shape, e.g. out.reshape(N, C, H, W)"),
    "inputs-modified": ("an input array was modified in place",
                        "work on new arrays (x = x - mu, not x -= mu); never write into x, gamma, beta or dout"),
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
    errors: dict[str, float] = field(default_factory=dict)
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
                "diagnoses": [d.id for d in self.diagnoses],
                "details": [{"id": d.id, "explanation": d.explanation, "fix": d.fix, "detail": d.detail}
                            for d in self.diagnoses],
                "notes": self.notes, "exception": self.exception}
