"""Adding a norm to normgrad: "batch RMS norm", declared once, served by every front end.

Per channel over (N, *spatial): y = x / sqrt(mean(x**2) + eps) * gamma + beta, with a
running mean square (in the running_var buffer) used in evaluation. One NormSpec is
the whole declaration; the CS231n-style functions, the fused kernels, a normgrad.nn
module and a normgrad.torch module (eager and compiled) then all compute it. Each
path is compared with a float64 reference; the exit status is 1 if any is off.

    .venv/bin/python examples/custom_norm.py
"""

import sys

import numpy as np
import torch

import normgrad
import normgrad.torch as nt
from normgrad import kernels, nn

BATCH_RMS = normgrad.NormSpec("batch_rms", features_last=False, across="batch", centered=False, running_stats=True)

EPS, TOL = 1e-5, 1e-4
rng = np.random.default_rng(0)
x = rng.normal(0.5, 2.0, (16, 6, 5))  # (N, C, L)
gamma, beta, dy = rng.normal(size=6), rng.normal(size=6), rng.normal(size=x.shape)


def reference(x, gamma, beta, running_ms=None):
    """y, dx, dgamma, dbeta in float64 torch autograd; running_ms: evaluation mode."""
    xt, g, b = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    ms = xt.square().mean(dim=(0, 2)) if running_ms is None else torch.tensor(running_ms)
    y = xt / torch.sqrt(ms + EPS).reshape(1, -1, 1) * g.reshape(1, -1, 1) + b.reshape(1, -1, 1)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), xt.grad.numpy(), g.grad.numpy(), b.grad.numpy()


def worst(got, want):
    return max(float(np.max(np.abs(np.asarray(a, dtype=np.float64) - b))) for a, b in zip(got, want))


want, errors = reference(x, gamma, beta), {}

out, cache = normgrad.norm_forward(BATCH_RMS, x, gamma, beta, {"mode": "train", "eps": EPS})
errors["functional (NumPy)"] = worst((out, *normgrad.norm_backward(dy, cache)), want)

y, stats = kernels.norm_forward(BATCH_RMS, x.astype(np.float32), gamma, beta, eps=EPS)
grads = kernels.norm_backward(BATCH_RMS, dy.astype(np.float32), x.astype(np.float32), gamma, stats)
errors["kernels (float32)"] = worst((y, *grads), want)

module = nn.Norm(BATCH_RMS, 6, eps=EPS, momentum=None, dtype=np.float64)
module.params["weight"][:], module.params["bias"][:] = gamma, beta
y = module.forward(x)
errors["normgrad.nn"] = worst((y, module.backward(dy), module.grads["weight"], module.grads["bias"]), want)
module.eval()  # evaluation: the running mean square of the one batch seen
y_eval = module.forward(x)
errors["normgrad.nn, evaluation"] = worst((y_eval,), reference(x, gamma, beta, module.buffers["running_var"]))

for name, layer in (("eager", nt.Norm(BATCH_RMS, 6, eps=EPS, dtype=torch.float64)), ("compiled", None)):
    layer = layer or torch.compile(nt.Norm(BATCH_RMS, 6, eps=EPS, dtype=torch.float64), fullgraph=True)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(gamma)), layer.bias.copy_(torch.tensor(beta))
    xt = torch.tensor(x, requires_grad=True)
    yt = layer(xt)
    yt.backward(torch.tensor(dy))
    errors[f"normgrad.torch, {name}"] = worst((yt.detach(), xt.grad, layer.weight.grad, layer.bias.grad), want)

for path, err in errors.items():
    print(f"{path:28s} largest error {err:.2e}")
failed = [path for path, err in errors.items() if not err <= TOL]
print("all paths agree with the float64 reference" if not failed else f"off: {', '.join(failed)}")
sys.exit(1 if failed else 0)
