"""The course's ``gradient_check``: normgrad's numeric gradients, with the course's defaults
(``eval_numerical_gradient`` prints each entry unless ``verbose=False``)."""

from .. import gradcheck as _gradcheck
from ..gradcheck import (eval_numerical_gradient_array, eval_numerical_gradient_blobs,
                         eval_numerical_gradient_net, grad_check_sparse, rel_error)


def eval_numerical_gradient(f, x, verbose=True, h=0.00001):
    """Numeric gradient of scalar ``f`` at ``x`` (perturbed in place, restored); prints
    each entry's index and gradient when ``verbose``, as the course's does by default."""
    return _gradcheck.eval_numerical_gradient(f, x, verbose=verbose, h=h)


__all__ = ["eval_numerical_gradient", "eval_numerical_gradient_array", "eval_numerical_gradient_blobs",
           "eval_numerical_gradient_net", "grad_check_sparse", "rel_error"]
