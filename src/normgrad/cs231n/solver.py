"""The course's ``Solver``: normgrad's Solver with the course's arguments and habits.

- keyword arguments as the course's: ``update_rule`` (the name of any function in
  ``optim``, or a function), ``optim_config``, ``lr_decay``, ``batch_size``,
  ``num_epochs``, ``num_train_samples``, ``num_val_samples``, ``checkpoint_name``,
  ``print_every``, ``verbose``; anything else raises ``ValueError("Unrecognized
  arguments ...")``, an unknown rule ``ValueError('Invalid update_rule "..."')``
- an accuracy check after the first iteration and after every epoch, so the
  histories have ``num_epochs + 1`` entries, printed as "(Epoch 0 / N) train acc: ..."
- random draws from NumPy's global generator, so ``np.random.seed`` reproduces a run
- a run that diverges records a NaN loss and goes on (the course's sweeps over weight
  scales expect that), keeping the last finite parameters

Differences kept on purpose: each epoch visits every example once (the course draws
each minibatch with replacement), and checkpoints are ``.npz`` + JSON, never pickles.
"""

from ..solver import Solver as _Solver
from . import optim

_COURSE = ("update_rule", "optim_config", "lr_decay", "batch_size", "num_epochs", "num_train_samples",
           "num_val_samples", "checkpoint_name", "print_every", "verbose")


class Solver(_Solver):
    def __init__(self, model, data, **kwargs):
        extra = [k for k in kwargs if k not in _COURSE]
        if extra:
            raise ValueError("Unrecognized arguments %s" % ", ".join('"%s"' % k for k in extra))
        rule = kwargs.pop("update_rule", "sgd")
        if isinstance(rule, str):
            if not hasattr(optim, rule):
                raise ValueError('Invalid update_rule "%s"' % rule)
            rule = getattr(optim, rule)
        super().__init__(model, data, update_rule=rule, check_first_step=True, stop_on_divergence=False, **kwargs)


__all__ = ["Solver"]
