"""The benchmark runs (quick mode) and writes its JSON; timings themselves are not asserted."""

from __future__ import annotations

import json

from normgrad.cli import main
from normgrad.core.specs import SPECS


def test_bench_quick_writes_table_and_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--json", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "memory bandwidth" in printed and "roofline 2t" in printed and "normgrad 2t" in printed
    report = json.loads(path.read_text())
    assert set(report["bandwidth_gbps"]) == {"1", "2"}
    assert all(r["copy"] > 0 and r["triad"] > 0 for r in report["bandwidth_gbps"].values())
    norms = {r["norm"] for r in report["kernels"]}
    assert norms == set(SPECS)  # every norm the kernels have
    for row in report["kernels"]:
        assert set(row["ms"]) == {"normgrad 1t", "normgrad 2t", "torch 1t", "torch 2t"}
        assert all(ms > 0 for ms in row["ms"].values())
        assert row["vs_torch_2t"] > 0 and row["of_roofline_2t"] > 0 and row["bytes_moved"] > 0
    assert all(ms["staged"] > 0 and ms["closed"] > 0 for ms in report["numpy_backward_ms"].values())
    errors = report["float32_large_mean_error"]
    assert errors["fused"] < 1e-3 and errors["numpy (functional)"] < 1e-3
    steps = report["train_step_ms"]
    assert set(steps) == {"batchnorm", "layernorm", "none"}
    assert all(ms["normgrad"] > 0 and ms["torch"] > 0 for ms in steps.values())
    models = report["models"]
    assert "whole PyTorch models" in printed and "per-call overhead" in printed
    assert {r["threads"] for r in models} == {1, 2}
    for threads in (1, 2):  # every model eager at each thread count, the MLP compiled too (quick)
        rows = [r for r in models if r["threads"] == threads]
        assert [r["mode"] for r in rows].count("eager") == 5 and [r["mode"] for r in rows].count("compiled") >= 1
        assert {r["target"] for r in rows if r["model"].startswith("grad penalty")} == {0.5}
    for row in models:
        assert "error" not in row, row
        assert row["torch_ms"] > 0 and row["normgrad_ms"] > 0 and row["ratio"] > 0
        assert row["met"] == (row["ratio"] <= row["target"])
        assert row["max_abs_loss_diff"] <= 1e-4 * max(1.0, abs(row["loss"]))  # the same weights, the same loss
        if row["mode"] == "compiled":
            assert all(s > 0 for s in row["first_call_s"].values())
        else:  # the profiler found torch's norm kernels inside torch.nn's step, and the rest
            assert 0 < row["torch_norm_share"] < 1
    overhead = report["call_overhead"]
    assert sorted((r["case"], r["threads"]) for r in overhead) == sorted(
        (c, t) for c in ("LayerNorm 256x1024", "BatchNorm1d 8x16") for t in (1, 2))
    for row in overhead:
        assert row["torch_us"] > 0 and row["normgrad_us"] > 0
        assert row["overhead_us"] == row["normgrad_us"] - row["torch_us"]
    sync = report["sync_batchnorm"]
    assert "SyncBatchNorm on 2 processes" in printed
    assert [r["allreduce_calls"] for r in sync] == [2] * len(sync)  # one forward, one backward
    assert all(r["sync_ms"] > 0 and r["plain_ms"] > 0 and r["shard"][0] * 2 == r["shape"][0] for r in sync)
    masked = report["masked_batchnorm"]
    assert "masked batch norm" in printed and [r["threads"] for r in masked] == [1, 2]
    for row in masked:
        assert set(row["ms"]) == {"normgrad masked", "normgrad unmasked", "torch masked"}
        assert 0.2 < row["padding"] < 0.4 and all(ms > 0 for ms in row["ms"].values())
    layouts = report["channels_last"]
    assert "channels_last input" in printed and len(layouts) == 4
    assert all(r["ms"]["normgrad"] > 0 and r["ms"]["torch"] > 0 and r["vs_torch"] > 0 for r in layouts)


def test_the_torch_masked_batch_norm_of_the_benchmark_is_right():
    """The pure-PyTorch masked batch norm timed against normgrad's computes the same thing."""
    import numpy as np
    import torch

    from normgrad import kernels
    from normgrad.bench.masked import padded_batch, torch_masked_batch_norm
    from normgrad.core.specs import BATCH

    x, dy, gamma, beta, mask = padded_batch((6, 4, 10), 0.3, np.float64)
    xt = torch.tensor(x, requires_grad=True)
    y = torch_masked_batch_norm(xt, torch.tensor(gamma), torch.tensor(beta), torch.tensor(mask)[:, None, :] * 1.0)
    y.backward(torch.tensor(dy))
    want_y, stats = kernels.norm_forward(BATCH, x, gamma, beta, mask=mask)
    want_dx, _, _ = kernels.norm_backward(BATCH, dy, x, gamma, stats, mask=mask)
    np.testing.assert_allclose(y.detach().numpy(), want_y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(xt.grad.numpy(), want_dx, rtol=1e-10, atol=1e-10)
