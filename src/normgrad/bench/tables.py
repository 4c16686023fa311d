"""The benchmark's tables (rich), one function per table; they print what ``bench`` measured."""

from __future__ import annotations

from rich.markup import escape
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


def models_table(console, rows: list[dict]) -> None:
    table = _table("whole PyTorch models, one training step, median ms",
                   ["model", "mode", "threads", "torch.nn", "normgrad", "ratio", "target", "norms' share",
                    "max |Δloss|", "1st compile, s"], left=2,
                   caption="MLP 512-1024-1024-10, batch 256; conv: 2 3x3 convs of 32 channels on 32x16x32x32, "
                           "of 64 channels with GroupNorm(8, 64) on 16x16x28x28; block: x + MLP(LN(x)), MLP "
                           "512-2048-512, then a final LN, on 8x256x512; grad penalty: double backward through 2 "
                           "BatchNorm2d (BN2d), 32x3x32x32. The same weights with torch.nn's norms and "
                           "normgrad.torch's (convert_norms); forward, loss, backward; compiled: torch.compile "
                           "(inductor); ratio: normgrad / torch.nn, red where it misses the target; max |Δloss|: "
                           "|normgrad's loss - torch.nn's|; 1st compile: the first compiled call, compilation "
                           "included, torch.nn / normgrad; norms' share: the part of torch.nn's eager step "
                           "inside torch's norm kernels (profiler), so 1 - share is the best ratio free norms "
                           "could reach. Each thread count in its own process")
    for r in rows:
        target = f"≤ {r['target']}×"
        first = r.get("first_call_s")
        first = f"{first.get('torch.nn', float('nan')):.1f} / {first.get('normgrad', float('nan')):.1f}" if first else "-"
        if "error" in r:
            table.add_row(r["model"], r["mode"], str(r["threads"]), "-", "-", "[red]error[/]", target, "-", "-", first)
            continue
        ratio = f"{r['ratio']:.2f}x" if r["met"] else f"[red]{r['ratio']:.2f}x miss[/]"
        table.add_row(r["model"], r["mode"], str(r["threads"]), f"{r['torch_ms']:.2f}", f"{r['normgrad_ms']:.2f}",
                      ratio, target, f"{r['torch_norm_share']:.0%}" if "torch_norm_share" in r else "-",
                      f"{r['max_abs_loss_diff']:.1e}", first)
    console.print(table)
    for r in rows:
        if "error" in r:
            console.print(f"[red]{r['model']}, {r['mode']}, {r['threads']} thread(s):[/] {escape(r['error'])}")


def overhead_table(console, rows: list[dict]) -> None:
    table = _table("per-call overhead, eager forward + backward, float32, median µs per call",
                   ["case", "threads", "torch.nn", "normgrad", "normgrad - torch.nn"],
                   caption="torch.nn's module against normgrad.torch's of the same kind, on the same input")
    for r in rows:
        table.add_row(r["case"], str(r["threads"]), f"{r['torch_us']:.1f}", f"{r['normgrad_us']:.1f}",
                      f"{r['overhead_us']:+.1f}")
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
