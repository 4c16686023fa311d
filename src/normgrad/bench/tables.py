"""The benchmark's tables (rich), one function per table; they print what ``bench`` measured."""

from __future__ import annotations

from rich.table import Table


def _table(title: str, columns: list[str], left: int = 1, caption: str | None = None) -> Table:
    table = Table(title=title, caption=caption, caption_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i < left else "right")
    return table


def bandwidth_table(console, bw: dict) -> None:
    table = _table("memory bandwidth, GB/s", ["threads", "copy", "triad"],
                   caption=f"STREAM-style, {bw[1]['array_mib']:.0f} MiB arrays, best of several")
    for threads, r in bw.items():
        table.add_row(str(threads), f"{r['copy']:.1f}", f"{r['triad']:.1f}")
    console.print(table)


def kernel_table(console, rows: list[dict]) -> None:
    table = _table("fused kernels, forward + backward, median ms",
                   ["case", "dtype", "normgrad 1t", "torch 1t", "ratio", "normgrad 2t", "torch 2t", "ratio",
                    "roofline 2t"], left=2,
                   caption="ratio: normgrad / torch at the same thread count. roofline: the time the bytes the "
                           "kernels must move take at the 2-thread copy bandwidth, over the time taken")
    for r in rows:
        ms = r["ms"]
        table.add_row(r["case"], r["dtype"], f"{ms['normgrad 1t']:.3f}", f"{ms.get('torch 1t', float('nan')):.3f}",
                      f"{r.get('vs_torch_1t', float('nan')):.2f}x", f"{ms['normgrad 2t']:.3f}",
                      f"{ms.get('torch 2t', float('nan')):.3f}", f"{r.get('vs_torch_2t', float('nan')):.2f}x",
                      f"{r['of_roofline_2t']:.0%}")
    console.print(table)


def numpy_table(console, rows: dict) -> None:
    table = _table("readable NumPy batch-norm backward, median ms", ["shape", "staged", "closed form", "staged / closed"],
                   caption="normgrad.functional: the gate-by-gate backward against the closed form")
    for label, ms in rows.items():
        table.add_row(label, f"{ms['staged']:.3f}", f"{ms['closed']:.3f}", f"{ms['staged'] / ms['closed']:.2f}x")
    console.print(table)


def step_table(console, step_ms: dict) -> None:
    table = _table("one training step of the demo MLP, median ms", ["normalization", "normgrad", "torch", "normgrad / torch"],
                   caption="8 layers 256 wide, batch 50, float32, dropout, Adam; both at the machine's thread count")
    for norm, ms in step_ms.items():
        ratio = f"{ms['normgrad'] / ms['torch']:.2f}x" if "torch" in ms else ""
        table.add_row(norm, f"{ms['normgrad']:.3f}", f"{ms.get('torch', float('nan')):.3f}", ratio)
    console.print(table)


def sync_table(console, rows: list[dict]) -> None:
    table = _table("SyncBatchNorm on 2 processes x 1 thread, float32 forward + backward, median ms",
                   ["batch", "sync", "plain", "ratio", "2 AR", "AR/step", "1p ng", "1p torch"],
                   caption="each process has half the batch. sync, plain: on rank 0's half; ratio: sync / plain; "
                           "2 AR: the two bare all-reduces; 1p: the whole batch in one process at 2 threads")
    for r in rows:
        table.add_row("x".join(map(str, r["shape"])), f"{r['sync_ms']:.2f}", f"{r['plain_ms']:.2f}",
                      f"{r['sync_ms'] / r['plain_ms']:.2f}x", f"{r['allreduce_ms']:.2f}", str(r["allreduce_calls"]),
                      f"{r['whole_batch_normgrad_ms']:.2f}", f"{r['whole_batch_torch_ms']:.2f}")
    console.print(table)


def compiled_table(console, rows: list[dict]) -> None:
    table = _table("whole models with batch norm, forward + backward, median ms",
                   ["model", "torch.nn eager", "normgrad eager", "ratio", "torch.nn compiled", "normgrad compiled",
                    "ratio", "first compiled call, s"],
                   caption="the same weights with torch.nn.BatchNorm*d and with normgrad.torch's (convert_batchnorm); "
                           "compiled: torch.compile (inductor); ratio: normgrad / torch.nn")
    for r in rows:
        ms, first = r["ms"], r["first_compiled_call_s"]
        table.add_row(r["model"], f"{ms['torch.nn eager']:.3f}", f"{ms['normgrad eager']:.3f}",
                      f"{ms['normgrad eager'] / ms['torch.nn eager']:.2f}x", f"{ms['torch.nn compiled']:.3f}",
                      f"{ms['normgrad compiled']:.3f}", f"{ms['normgrad compiled'] / ms['torch.nn compiled']:.2f}x",
                      f"{first['torch.nn']:.1f} / {first['normgrad']:.1f}")
    console.print(table)


def masked_table(console, rows: list[dict]) -> None:
    table = _table("masked batch norm, float32 forward + backward, median ms",
                   ["shape", "padding", "threads", "normgrad masked", "normgrad unmasked", "torch ops masked",
                    "vs unmasked", "vs torch"],
                   caption="the same padded tensor; normgrad masked: the mask in the fused statistics and input "
                           "gradient; torch ops masked: masked mean and variance in torch operations, autograd")
    for r in rows:
        ms = r["ms"]
        torch_ms = ms.get("torch masked")
        table.add_row("x".join(map(str, r["shape"])), f"{100 * r['padding']:.0f}%", str(r["threads"]),
                      f"{ms['normgrad masked']:.3f}", f"{ms['normgrad unmasked']:.3f}",
                      "-" if torch_ms is None else f"{torch_ms:.3f}", f"{r['vs_unmasked']:.2f}x",
                      "-" if torch_ms is None else f"{r['vs_torch_masked']:.2f}x")
    console.print(table)


def channels_last_table(console, rows: list[dict]) -> None:
    table = _table("channels_last input, float32 forward + backward, median ms",
                   ["case", "threads", "normgrad", "torch", "ratio"],
                   caption="the same channels-last tensor through normgrad.torch's module and torch.nn's; "
                           "ratio: normgrad / torch")
    for r in rows:
        table.add_row(r["case"], str(r["threads"]), f"{r['ms']['normgrad']:.3f}", f"{r['ms']['torch']:.3f}",
                      f"{r['vs_torch']:.2f}x")
    console.print(table)
