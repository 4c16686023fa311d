"""PyTorch interop: normgrad's batch norm as drop-in ``torch.nn`` modules, and a
``SyncBatchNorm`` that synchronizes statistics across processes on CPU (gloo)
as well as GPU (NCCL).

- ``BatchNorm1d/2d/3d``: subclasses of ``torch.nn.BatchNorm*d`` (same arguments,
  buffers, state dict, train/eval) whose CPU float32/float64 work runs on
  normgrad's fused kernels; ``batch_norm`` is the functional form. They call the
  operators ``torch.ops.normgrad.norm_forward`` / ``norm_backward`` (``ops``), so
  ``torch.compile``, ``torch.export``, ``torch.jit.trace`` and double backward work;
  inductor fuses them as torch operations (``decompositions``).
- ``SyncBatchNorm``: ``torch.nn.SyncBatchNorm``'s interface, also on CPU tensors:
  two all-reduces per training step (statistics, gradient sums); eager only;
  ``revert_sync_batchnorm`` turns it back into batch norm.
- ``Norm(spec, num_features)``: any declared norm (``normgrad.NormSpec``) as a module.
- ``LayerNorm``, ``GroupNorm``, ``InstanceNorm1d/2d``, ``RMSNorm`` (subclasses of
  torch's) and ``BatchRenorm1d/2d``, ``GhostBatchNorm1d/2d`` (``norms``);
  ``convert_norms`` swaps torch's norms for normgrad's in a model.
- ``TorchCommunicator``: ``torch.distributed`` behind the small interface that
  ``normgrad.nn.distributed`` uses for NumPy models.
- ``run_local``: run a function on several local processes (gloo, 127.0.0.1),
  bounded in time; for tests and benchmarks.

Needs PyTorch (``pip install 'normgrad[torch]'``); nothing else in normgrad
imports it.
"""

from importlib.util import find_spec

if find_spec("torch") is None:  # say how to fix it, rather than fail deep inside
    raise ImportError("normgrad.torch needs PyTorch: pip install 'normgrad[torch]'")

from . import decompositions, ops
from .distributed import TorchCommunicator
from .functional import batch_norm
from .launch import RankFailed, run_local
from .modules import (
    BatchNorm,
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    SyncBatchNorm,
    convert_batchnorm,
    revert_sync_batchnorm,
)
from .norms import (
    BatchRenorm1d,
    BatchRenorm2d,
    GhostBatchNorm1d,
    GhostBatchNorm2d,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    LayerNorm,
    Norm,
    RMSNorm,
    convert_norms,
)

decompositions.register()

__all__ = ["Norm", "BatchNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LayerNorm", "GroupNorm", "RMSNorm",
           "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "BatchRenorm1d", "BatchRenorm2d", "GhostBatchNorm1d",
           "GhostBatchNorm2d", "convert_batchnorm", "convert_norms", "revert_sync_batchnorm", "batch_norm",
           "TorchCommunicator", "run_local", "RankFailed", "ops"]
