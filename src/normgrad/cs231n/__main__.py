"""``python -m normgrad.cs231n shim DIR`` / ``unshim DIR``: see ``normgrad.cs231n.shim``."""

import argparse
import sys

from . import shim


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m normgrad.cs231n",
                                     description="point an assignment folder's cs231n package at normgrad")
    parser.add_argument("action", choices=("shim", "unshim"))
    parser.add_argument("folder", help="the assignment folder (the one holding the notebooks and cs231n/)")
    args = parser.parse_args(argv)
    try:
        if args.action == "shim":
            files = shim.write(args.folder)
            print(f"wrote {len(files)} modules into {args.folder}/cs231n; the course's own files are kept as *.py.orig")
        else:
            files = shim.undo(args.folder)
            print(f"put back {len(files)} of the course's modules in {args.folder}/cs231n")
    except (ValueError, OSError) as err:
        print(f"python -m normgrad.cs231n {args.action}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
