"""``normgrad bench``: normgrad's kernels against PyTorch and the machine's memory, a job
above the library.

``job.run`` measures the memory bandwidth (``bandwidth``), times every norm's kernels
(``norms``), training steps of whole PyTorch models with normgrad.torch's norms, eager
and under ``torch.compile`` (``models``), and SyncBatchNorm on two processes
(``distributed``), by the rules of ``timing``, and prints ``tables``.
"""

from .job import run

__all__ = ["run"]
