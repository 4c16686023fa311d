"""The ``normgrad`` command line. ``main(argv)`` is testable in-process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="normgrad", description="Normalization layers and their gradients, done right."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="the main job: train a deep MLP without and with batch/layer norm, check "
                     "gradients, write a report with plots"
    )
    demo.add_argument("--dataset", choices=("mnist1d", "digits"), default="mnist1d",
                      help="data set, generated or shipped offline (default mnist1d)")
    demo.add_argument("--epochs", type=int, help="epochs per model (default 40; 3 with --quick)")
    demo.add_argument("--out", type=Path, default=Path("normgrad-report"),
                      help="report directory (default ./normgrad-report)")
    demo.add_argument("--quick", action="store_true", help="a small net on 600 examples: seconds, for tests")
    demo.add_argument("--seed", type=int, default=0, help="seed for the data split, weights and shuffling")

    graph = sub.add_parser(
        "graph", help="render the annotated computational graph of a normalization layer"
    )
    graph.add_argument("--norm", choices=("batch", "layer", "group"), default="batch")
    graph.add_argument("--shape", help="N,D (batch, layer) or N,C,H,W (group); default 4,3 or 2,4,2,2")
    graph.add_argument("--groups", type=int, default=2, help="G for --norm group (default 2)")
    graph.add_argument("--seed", type=int, default=0, help="seed for the data, gamma, beta and dout")
    graph.add_argument("--out", type=Path, help="output .svg or .png (default normgrad-graph-NORM.svg)")
    graph.add_argument("--steps", action="store_true", help="print the backward pass gate by gate")

    check = sub.add_parser(
        "check", help="run your own CS231n-named norm functions against the reference and say what is wrong"
    )
    check.add_argument("file", type=Path, help="a .py file defining batchnorm_forward, batchnorm_backward, ...")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--timeout", type=float, default=10.0,
                       help="seconds for each function's own run, after the file has loaded (default 10)")
    check.add_argument("--load-timeout", type=float, default=30.0,
                       help="seconds for Python to start and the file to load (default 30)")
    check.add_argument("--strict", action="store_true",
                       help="fail on unfinished functions and on outputs in a shape that only broadcasts")

    bench = sub.add_parser(
        "bench", help="fused kernels vs NumPy, PyTorch and the memory-copy bandwidth, as ratios"
    )
    bench.add_argument("--quick", action="store_true", help="two small shapes, float32 only (seconds)")
    bench.add_argument("--json", type=Path, help="also write the results to this JSON file")

    experiment = sub.add_parser(
        "experiment", help="the classic normalization studies, with plots, a report and findings"
    )
    experiment.add_argument("name", choices=("deep-net", "init-scale", "batch-size", "steps-to-accuracy",
                                             "conv-norms", "layernorm-vs-torch", "all"))
    experiment.add_argument("--dataset", choices=("mnist1d", "digits", "cifar10"), default="mnist1d",
                            help="MLP studies: mnist1d or digits; conv-norms: digits (mnist1d means digits "
                                 "there) or cifar10 with --data-root")
    experiment.add_argument("--data-root", help="the extracted cifar-10-batches-py folder, for --dataset cifar10")
    experiment.add_argument("--quick", action="store_true", help="small nets and few epochs: seconds, for tests")
    experiment.add_argument("--seed", type=int, default=0, help="seed of the first run (default 0)")
    experiment.add_argument("--out", type=Path, default=Path("normgrad-experiments"),
                            help="output directory; re-running with it resumes (default ./normgrad-experiments)")
    experiment.add_argument("--jobs", type=int, help="worker processes (default: the number of cores)")
    return parser


def _demo(args) -> int:
    from rich.console import Console

    from . import demo

    return demo.run(Console(), dataset=args.dataset, epochs=args.epochs, out=args.out, quick=args.quick,
                    seed=args.seed)


def _graph(args) -> int:
    from rich.console import Console

    from .demo import graph_walk
    from .outputs import check_output_file

    shape = (graph_walk.parse_shape(args.shape, args.norm) if args.shape
             else graph_walk.DEFAULT_SHAPES[args.norm])
    out = args.out or Path(f"normgrad-graph-{args.norm}.svg")
    if out.suffix.lower() not in (".svg", ".png"):
        raise ValueError(f"--out must end in .svg or .png, got {out}")
    check_output_file(out, "--out")
    return graph_walk.run(Console(), args.norm, shape, args.seed, out, args.steps, args.groups)


def _bench(args) -> int:
    from rich.console import Console

    from . import bench

    return bench.run(Console(width=None if sys.stdout.isatty() else 120), quick=args.quick, json_path=args.json)


def _experiment(args) -> int:
    from rich.console import Console

    from . import studies

    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    return studies.run(Console(), args.name, args.out, quick=args.quick, seed=args.seed, jobs=args.jobs,
                          dataset=args.dataset, data_root=args.data_root)


def _check(args) -> int:
    from rich.console import Console

    from .diagnose import check_file
    from .diagnose.render import print_report

    if args.timeout <= 0 or args.load_timeout <= 0:
        raise ValueError(f"--timeout and --load-timeout must be > 0, got {args.timeout}, {args.load_timeout}")
    report = check_file(args.file, timeout=args.timeout, strict=args.strict, load_timeout=args.load_timeout)
    if args.json:
        print(report.dumps())
    else:  # piped: no line breaks inside values
        print_report(Console(soft_wrap=not sys.stdout.isatty()), report)
    return report.exit_code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"demo": _demo, "graph": _graph, "bench": _bench, "check": _check, "experiment": _experiment}
    try:
        return commands[args.command](args)
    except ValueError as err:  # bad options: say what is wrong, no traceback
        print(f"normgrad {args.command}: error: {err}", file=sys.stderr)
        return 2
