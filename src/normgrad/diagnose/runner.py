"""Run the user's file in child processes with a time limit and an output cap."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

KEEP_OUTPUT = 4096


@dataclass
class ChildResult:
    result: dict | None  # what the child wrote, None if it died or hung
    timed_out: bool
    returncode: int | None
    output: str  # the first KEEP_OUTPUT bytes the child printed
    output_bytes: int  # how much it printed in all (that reached the pipe)
    running: str | None = None  # the user function it was in when it died or was stopped


def _drain(pipe, keep: bytearray, counter: list) -> None:
    while True:
        chunk = pipe.read(65536)
        if not chunk:
            return
        counter[0] += len(chunk)
        if len(keep) < KEEP_OUTPUT:
            keep += chunk[: KEEP_OUTPUT - len(keep)]


LOAD_TIMEOUT = 30.0  # seconds for the interpreter to start and the file to load (default)


def _wait(proc, loaded: Path, timeout: float, load_timeout: float) -> bool:
    """Wait for ``proc``: up to ``load_timeout`` until it has loaded the file, then up to
    ``timeout`` for the function itself. True if it ran out of time."""
    start = time.monotonic()
    deadline = start + load_timeout
    seen_loaded = False
    while proc.poll() is None:
        now = time.monotonic()
        if not seen_loaded and loaded.exists():
            seen_loaded, deadline = True, now + timeout
        if now > deadline:
            return True
        time.sleep(0.01)
    return False


def run_child(path: Path, name: str, timeout: float, load_timeout: float = LOAD_TIMEOUT) -> ChildResult:
    """Run ``name`` of the user's file ``path`` in a fresh process, in a temporary working
    directory of its own (what the user's code writes there is removed); ``timeout`` counts
    from the moment the file has loaded (start-up and loading get ``load_timeout``)."""
    with tempfile.TemporaryDirectory(prefix="normgrad-check-") as tmp:
        result_path = Path(tmp) / "result.json"
        workdir = Path(tmp) / "cwd"
        workdir.mkdir()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
        here = str(Path(__file__).resolve().parents[2])  # normgrad itself stays importable from there
        env["PYTHONPATH"] = os.pathsep.join([here] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        proc = subprocess.Popen(
            [sys.executable, "-m", "normgrad.diagnose._child", str(Path(path).resolve()), name, str(result_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            env=env, cwd=workdir,
        )
        keep, counter = bytearray(), [0]
        reader = threading.Thread(target=_drain, args=(proc.stdout, keep, counter), daemon=True)
        reader.start()
        try:
            timed_out = _wait(proc, Path(str(result_path) + ".loaded"), timeout, load_timeout)
        finally:  # the whole process group: children the user's code started go too
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        reader.join(timeout=5)
        result = None
        if not timed_out and result_path.exists():
            try:
                result = json.loads(result_path.read_text())
            except (ValueError, OSError):
                result = None
        running = None
        if result is None:
            try:
                running = Path(str(result_path) + ".progress").read_text() or None
            except OSError:
                running = None
        return ChildResult(result, timed_out, None if timed_out else proc.returncode,
                           keep.decode("utf-8", "replace"), counter[0], running)
