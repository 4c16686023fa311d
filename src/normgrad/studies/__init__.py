"""``normgrad experiment``: the classic normalization studies, a job above the library.

``job.run`` runs a study (or all of them) and the layer-norm check; ``catalog`` says
what each study trains and what its runs find, ``runs`` trains them (by the Solver, in
worker processes, resumable), ``plots`` and ``report`` draw and write them, and
``ln_check`` trains the demo's setting with PyTorch's layers (from ``normgrad.demo``'s
public settings).
"""

from .catalog import DESCRIPTIONS, STUDIES, configs_for, findings
from .job import NAMES, run, run_study

__all__ = ["DESCRIPTIONS", "NAMES", "STUDIES", "configs_for", "findings", "run", "run_study"]
