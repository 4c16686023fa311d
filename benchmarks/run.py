"""Benchmark: every norm's fused kernels against PyTorch and the memory-bandwidth roofline.

    ./run.sh bench [--quick] [--json results.json]

is the same as ``normgrad bench``; this script exists so the benchmark can be run
from a checkout with ``python benchmarks/run.py``.
"""

import sys

from normgrad.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
