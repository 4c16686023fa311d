"""The benchmark runs (quick mode) and writes its JSON; timings themselves are not asserted."""

from __future__ import annotations

import json

from normgrad.cli import main


def test_bench_quick_writes_table_and_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--json", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "fused 2t" in printed and "torch 2t" in printed and "copy 2t" in printed
    report = json.loads(path.read_text())
    impls = {r["impl"] for r in report["results"]}
    assert {"numpy staged", "numpy closed", "fused 1t", "fused 2t", "torch 1t", "torch 2t", "copy 1t"} <= impls
    for row in report["results"]:
        assert row["ms"] > 0 and row["gbps"] > 0
        if row["impl"].startswith("fused"):
            assert row["vs_torch"] > 0 and 0 < row["of_copy"]
    errors = report["float32_large_mean_error"]
    assert errors["fused"] < 1e-5 and errors["numpy (functional)"] < 1e-5
    steps = report["train_step_ms"]
    assert set(steps) == {"batchnorm", "layernorm", "none"}
    assert all(ms["normgrad"] > 0 and ms["torch"] > 0 for ms in steps.values())
    sync = report["sync_batchnorm"]
    assert "SyncBatchNorm on 2 processes" in printed
    assert [r["allreduce_calls"] for r in sync] == [2] * len(sync)  # one forward, one backward
    assert all(r["sync_ms"] > 0 and r["plain_ms"] > 0 and r["shard"][0] * 2 == r["shape"][0] for r in sync)
