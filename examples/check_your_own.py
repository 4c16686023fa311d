"""Check a hand-written batch-norm backward against numeric gradients and normgrad.

Replace `my_batchnorm_forward` / `my_batchnorm_backward` with your own (CS231n names and
signatures). The backward below has a classic bug: it drops the path through the mean.

    python examples/check_your_own.py
"""

import numpy as np

import normgrad as ng


def my_batchnorm_forward(x, gamma, beta, bn_param):
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    xhat = (x - mu) / np.sqrt(var + 1e-5)
    return gamma * xhat + beta, (xhat, gamma, var)


def my_batchnorm_backward(dout, cache):
    xhat, gamma, var = cache
    N = dout.shape[0]
    dxhat = dout * gamma
    ivar = 1.0 / np.sqrt(var + 1e-5)
    # bug: the "- dxhat.sum(axis=0)" term (the path through the mean) is missing
    dx = ivar / N * (N * dxhat - xhat * np.sum(dxhat * xhat, axis=0))
    return dx, np.sum(dout * xhat, axis=0), np.sum(dout, axis=0)


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (8, 5))  # a non-zero mean, so a missing mean path shows
    gamma, beta = rng.normal(size=5), rng.normal(size=5)
    dout = rng.normal(size=(8, 5))  # random: an all-ones dout hides batch-norm bugs

    _, cache = my_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    mine = my_batchnorm_backward(dout, cache)
    _, ref_cache = ng.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    reference = ng.batchnorm_backward_alt(dout, ref_cache)

    def f(a):
        return my_batchnorm_forward(a, gamma, beta, {"mode": "train"})[0]

    numeric_dx = ng.eval_numerical_gradient_array(f, x, dout, h=1e-3, order=4)
    print(f"dx     vs numeric gradient: {ng.rel_error(mine[0], numeric_dx):.1e}   (want < 1e-8)")
    for name, a, b in zip(("dx", "dgamma", "dbeta"), mine, reference):
        print(f"{name:6} vs normgrad:         {ng.rel_error(a, b):.1e}")
    # the mean path adds -mean(dxhat) / std to every row: that is what is missing here
    missing = np.mean(dout * gamma, axis=0) / np.sqrt(x.var(axis=0) + 1e-5)
    print("dx error is the mean path:", np.allclose(reference[0] - mine[0], -missing))


if __name__ == "__main__":
    main()
