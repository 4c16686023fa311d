"""The course's ``optim``: normgrad's update rules, ``rule(w, dw, config) -> (next_w, config)``."""

from ..optim import adam, rmsprop, sgd, sgd_momentum

__all__ = ["sgd", "sgd_momentum", "rmsprop", "adam"]
