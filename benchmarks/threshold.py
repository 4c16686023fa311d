"""When does a parallel kernel pay? Serial vs parallel variants of the fused kernels, at
2 threads, over sizes: the data behind ``kernels.PARALLEL_MIN_SIZE``.

    .venv/bin/python benchmarks/threshold.py
"""

import time

import numba
import numpy as np

from normgrad.kernels import _numba as K


def _calls(n_rows: int, width: int, dtype):
    x = np.random.default_rng(0).normal(size=(n_rows, width, 1)).astype(dtype)
    dy, y, dx = np.ones_like(x), np.empty_like(x), np.empty_like(x)
    g, b = np.ones(width), np.zeros(width)
    gx, bx = g.astype(dtype), b.astype(dtype)
    m, v, s = np.empty(n_rows), np.empty(n_rows), np.empty(n_rows)

    zero = np.zeros(width, dtype)

    def batch(kernels, chunks):  # the four passes of a training step: stats, affine, grad sums, grad input
        mean, var = kernels["channel_stats"](x, True, chunks)
        kernels["channel_affine"](x, zero, zero, gx, bx, y, chunks)
        kernels["channel_grad_sums"](dy, x, zero, zero, chunks)
        kernels["channel_grad_input"](dy, x, zero, zero, gx, bx, bx, dx, chunks)

    def layer(kernels, chunks):
        kernels["row_forward"](x, gx, bx, 1, 1e-5, True, y, m, v, s, chunks)
        kernels["row_backward"](dy, x, gx, 1, True, m, s, dx, chunks)

    return {"batch": batch, "layer": layer}


def best_us(fn, repeats=30):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e6 * min(times)


def main():
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    print(f"{'elements':>10} {'norm':>6} {'serial us':>10} {'parallel us':>12}")
    for exponent in range(12, 21):
        for norm in ("batch", "layer"):
            width = 256
            calls = _calls(max(2, (1 << exponent) // width), width, np.float32)
            ser = best_us(lambda: calls[norm](K.SERIAL, 1))
            par = best_us(lambda: calls[norm](K.PARALLEL, 16))
            print(f"{1 << exponent:>10} {norm:>6} {ser:>10.1f} {par:>12.1f}")


if __name__ == "__main__":
    main()
