"""The CS231n assignment-2 package (2024/2025 layout), on normgrad.

A learner replaces ``from cs231n.layers import *`` with
``from normgrad.cs231n.layers import *``, or runs ``python -m normgrad.cs231n shim DIR``
to write a small ``cs231n`` package into the assignment folder that re-exports this one,
and the course's notebooks run unchanged. Every module is thin: the names are
normgrad's own functions under the course's names, plus the course's behaviours
where a notebook depends on them (see ``solver`` and ``data_utils``).

Modules: layers, layer_utils, fast_layers, gradient_check, optim, solver, data_utils,
vis_utils, classifiers.fc_net (FullyConnectedNet), classifiers.cnn (ThreeLayerConvNet).
"""

MODULES = ("layers", "layer_utils", "fast_layers", "gradient_check", "optim", "solver", "data_utils", "vis_utils",
           "classifiers", "classifiers.fc_net", "classifiers.cnn")
