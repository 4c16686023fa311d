"""Run a function on several processes joined by torch.distributed (gloo, 127.0.0.1).

``run_ranks(fn, world_size, tmp_path, *args)`` starts one spawned process per
rank, each of which joins a gloo group through a file in ``tmp_path`` (no port
to race for) and returns ``fn(rank, world_size, *args)``. Each result comes back
through a pickle file. The call is bounded: after ``deadline`` seconds every
process still running is killed and the test fails, so no test can hang.
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import pickle
import sys
import time
import traceback

GROUP_TIMEOUT_S = 30


def _entry(fn, rank, world_size, store, out, args):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo0" if sys.platform == "darwin" else "lo"  # 127.0.0.1 only
    import torch.distributed as dist

    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=GROUP_TIMEOUT_S))
        result = {"ok": fn(rank, world_size, *args)}
    except BaseException as err:  # reported to the parent, which fails the test with it
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    with open(out + ".tmp", "wb") as f:
        pickle.dump(result, f)
    os.replace(out + ".tmp", out)
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:
            pass


def run_ranks(fn, world_size: int, tmp_path, *args, deadline: float = 120.0, allow_missing=()):
    """[fn(0, W, *args), ..., fn(W-1, W, *args)], each run in its own process.

    A rank that raised makes this raise AssertionError with its traceback; a rank
    in ``allow_missing`` may die without a result (its entry is None).
    """
    ctx = multiprocessing.get_context("spawn")
    store = str(tmp_path / f"store-{time.monotonic_ns()}")
    outs = [str(tmp_path / f"rank{r}-{time.monotonic_ns()}.pkl") for r in range(world_size)]
    procs = [ctx.Process(target=_entry, args=(fn, r, world_size, store, outs[r], args), daemon=True)
             for r in range(world_size)]
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
    assert not hung, f"ranks {hung} still running after {deadline} s: killed"
    results = []
    for r, out in enumerate(outs):
        if not os.path.exists(out):
            assert r in allow_missing, f"rank {r} died without a result (exit code {procs[r].exitcode})"
            results.append(None)
            continue
        with open(out, "rb") as f:
            result = pickle.load(f)
        assert "ok" in result, f"rank {r} failed: {result['error']}\n{result['traceback']}"
        results.append(result["ok"])
    return results
