"""normgrad's operators as ``torch.compile`` sees them: decompositions into torch operations.

Eager calls run ``torch.ops.normgrad.norm_forward`` / ``norm_backward`` on the fused
kernels. Under ``torch.compile`` with inductor (the default backend) both operators are
replaced, while the graph is lowered, by the same norm in torch operations (``_formulas``:
shifted statistics accumulated in float32, or float64 for float64 input; statistics and
weight gradients returned in the operator's dtypes), so inductor fuses the norm with the
convolution, activation or residual around it, as it fuses torch's own norms.

What keeps the operators instead:

- ``torch.export`` records ``normgrad::norm_forward`` by name (a program needs
  ``import normgrad.torch`` to run after ``torch.export.load``);
- other ``torch.compile`` backends (``"eager"``, ``"aot_eager"``) call the kernels;
- ``torch.jit.trace`` records the operators.

The table is inductor's own (``torch._inductor.decomposition``), filled when
``normgrad.torch`` is imported.
"""

from __future__ import annotations

import torch

from ..core.specs import from_code
from . import ops


def _forward(x, weight, bias, running_mean, running_var, norm, groups, eps, mask=None):
    spec = from_code(norm)
    running = None if running_mean is None else (running_mean, running_var)
    if x.numel() == 0:
        return ops._empty_forward(spec, x, running, groups, eps)
    return ops.torch_ops_forward(spec, x, weight, bias, running, groups, eps, mask, channel_buffers=True)


def _backward(dy, x, weight, mean, var, invstd, norm, groups, batch_stats, mask=None):
    return ops.torch_ops_backward(from_code(norm), dy, x, weight, mean, invstd, groups, batch_stats, mask)


def register() -> None:
    """Put both operators' decompositions into inductor's table (idempotent)."""
    from torch._inductor import decomposition

    table = decomposition.decompositions
    table[torch.ops.normgrad.norm_forward.default] = _forward
    table[torch.ops.normgrad.norm_backward.default] = _backward
    decomposition.fast_random_decomps.cache_clear()  # a copy of the table taken before this import
