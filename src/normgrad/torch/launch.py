"""Run a function on several local processes joined by ``torch.distributed``.

``run_local(fn, world_size, *args)`` starts one spawned process per rank; each
joins a gloo group over 127.0.0.1 (rendezvous through a file, so there is no
port to race for) and returns ``fn(rank, world_size, *args)`` to the caller
through a pickle file. Every call is bounded: after ``deadline`` seconds the
processes still running are killed and ``TimeoutError`` is raised. This is what
normgrad's multi-process tests and the synchronized batch-norm benchmark use; it
suits a laptop test suite of your own too. ``fn`` must be importable (defined at
module level).
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import pickle
import sys
import tempfile
import time
import traceback


class RankFailed(RuntimeError):
    """A rank raised, or died without a result."""


def _entry(fn, rank, world_size, store, out, args, group_timeout):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo0" if sys.platform == "darwin" else "lo"  # 127.0.0.1 only
    import torch.distributed as dist

    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=group_timeout))
        result = {"ok": fn(rank, world_size, *args)}
    except BaseException as err:  # reported to the parent
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    with open(out + ".tmp", "wb") as f:
        pickle.dump(result, f)
    os.replace(out + ".tmp", out)
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:
            pass


def run_local(fn, world_size: int, *args, deadline: float = 120.0, group_timeout: float = 30.0,
              allow_missing=()) -> list:
    """[fn(0, W, *args), ..., fn(W-1, W, *args)], each run in its own process.

    - deadline: seconds for all ranks together; then survivors are killed and
      TimeoutError is raised
    - group_timeout: the process group's own timeout for each collective
    - allow_missing: ranks that may die without a result (their entry is None)
    A rank that raised, or died otherwise, makes this raise ``RankFailed`` with its
    traceback.
    """
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="normgrad-ranks-") as tmp:
        store = os.path.join(tmp, "store")
        outs = [os.path.join(tmp, f"rank{r}.pkl") for r in range(world_size)]
        procs = [ctx.Process(target=_entry, args=(fn, r, world_size, store, outs[r], args, group_timeout),
                             daemon=True) for r in range(world_size)]
        for p in procs:
            p.start()
        end = time.monotonic() + deadline
        for p in procs:
            p.join(max(0.0, end - time.monotonic()))
        hung = [r for r, p in enumerate(procs) if p.is_alive()]
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(10)
        if hung:
            raise TimeoutError(f"ranks {hung} still running after {deadline} s: killed")
        results = []
        for r, out in enumerate(outs):
            if not os.path.exists(out):
                if r not in allow_missing:
                    raise RankFailed(f"rank {r} died without a result (exit code {procs[r].exitcode})")
                results.append(None)
                continue
            with open(out, "rb") as f:
                result = pickle.load(f)
            if "ok" not in result:
                raise RankFailed(f"rank {r} failed: {result['error']}\n{result['traceback']}")
            results.append(result["ok"])
    return results
