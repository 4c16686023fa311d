"""``normgrad demo`` (and ``normgrad graph``): a job above the library.

``job.run`` trains the demo's MLP without normalization, with batch norm and with
layer norm (``training``, by the Solver), checks gradients (``gradchecks``), draws
(``plots``, ``graph_walk``) and writes the report (``report``). Its settings and data
(``settings``) are public: the layer-norm check of the studies trains from them.
"""

from .job import run
from .settings import MODELS, Settings, build_model, load_data, solver_options

__all__ = ["MODELS", "Settings", "build_model", "load_data", "run", "solver_options"]
