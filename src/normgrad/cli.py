"""The ``normgrad`` command line. ``main(argv)`` is testable in-process."""

from __future__ import annotations

import argparse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="normgrad", description="Normalization layers and their gradients, done right."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="the main job: a tour of batch norm's forward pass and gradient checks"
    )
    demo.add_argument("--seed", type=int, default=0, help="seed for every random choice")
    return parser


def _demo(args) -> int:
    from rich.console import Console

    from .experiments import showcase

    return showcase.run(Console(), seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"demo": _demo}
    return commands[args.command](args)
