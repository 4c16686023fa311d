"""Child process of ``normgrad check``: load the user's file, run one function, write JSON.

    python -m normgrad.diagnose._child FILE NAME RESULT.json

NAME ``__discover__`` lists the CS231n-named functions the file defines (and those
that did not load). The child runs in a fresh temporary working directory (the parent's
choice), and writes the name of the user function it is calling to RESULT.json.progress,
so a hang or a crash is blamed on the function that was running. Once the file is loaded the child touches RESULT.json.loaded, so
the parent's time limit counts the function's own run, not start-up. Whatever the
user's code does (raise, sys.exit, print without end) ends up in RESULT.json or, if
the process dies or hangs, is reported by the parent from the exit status.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUTPUT_CAP = 64 * 1024


class _CappedStream:
    """Passes the first OUTPUT_CAP characters through, then swallows the rest, cheaply."""

    def __init__(self, stream):
        self.stream, self.left, self.total = stream, OUTPUT_CAP, 0

    def write(self, text):
        self.total += len(text)
        if self.left > 0:
            self.stream.write(text[: self.left])
            self.left -= len(text)
        return len(text)

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return False


def main(argv: list[str]) -> None:
    from . import calling
    from .inputs import FUNCTIONS
    from .loader import load
    from .probe import run_function

    path, name, result_path = Path(argv[0]).resolve(), argv[1], Path(argv[2])
    sys.stdout, sys.stderr = _CappedStream(sys.stdout), _CappedStream(sys.stderr)
    progress = Path(str(result_path) + ".progress")
    progress.write_text("(loading the file)")
    loaded = load(path, calling.describe_exception)
    calling.PROGRESS = progress  # from now on: the user function running, for a parent that has to kill us
    Path(str(result_path) + ".loaded").touch()  # the parent's time limit for the function starts now
    if loaded.error is not None:
        result = {"load_error": loaded.error}
    elif name == "__discover__":
        result = {"functions": [f for f in FUNCTIONS if callable(loaded.namespace.get(f))],
                  "broken": loaded.broken, "notes": loaded.notes, "hints": loaded.hints}
    else:
        result = run_function(loaded.namespace, name, str(path))
    result["output_chars"] = sys.stdout.total + sys.stderr.total
    result_path.write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
