"""Flush-to-zero for subnormal floats on the calling thread (x86-64 MXCSR FTZ and DAZ bits).

Arithmetic that reads or produces a subnormal number (below ``np.finfo(dtype).tiny``)
takes a microcode assist on x86, about 100x slower. A float32 net whose gradients
vanish fills its gradients and Adam moments with them: the demo's unnormalized MLP
ran 10x slower per epoch late in training. ``torch.set_flush_denormal(True)`` is
PyTorch's switch for the same bits; NumPy has none, so the two LLVM intrinsics
that read and write MXCSR are called from a Numba function.
"""

from __future__ import annotations

import contextlib
import platform

import numpy as np

FTZ_DAZ = 0x8040  # MXCSR bit 15 (flush to zero) | bit 6 (denormals are zero)
SUPPORTED = platform.machine().lower() in ("x86_64", "amd64")

if SUPPORTED:
    from llvmlite import ir
    from numba import njit, types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def _swap_mxcsr(typingctx, value):
        """Write ``value`` (uint32) into MXCSR; return what it held."""

        def codegen(context, builder, signature, args):
            i8p = ir.IntType(8).as_pointer()
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            fnty = ir.FunctionType(ir.VoidType(), [i8p])
            read = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.stmxcsr")
            write = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.ldmxcsr")
            builder.call(read, [builder.bitcast(slot, i8p)])
            old = builder.load(slot)
            builder.store(args[0], slot)
            builder.call(write, [builder.bitcast(slot, i8p)])
            return old

        return types.uint32(types.uint32), codegen

    @njit(cache=True)
    def _set_bits(enabled):
        old = _swap_mxcsr(np.uint32(0x1F80))
        new = (old | FTZ_DAZ) if enabled else (old & ~np.uint32(FTZ_DAZ))
        _swap_mxcsr(np.uint32(new))
        return (old & FTZ_DAZ) == FTZ_DAZ


def set_flush_denormal(enabled: bool) -> bool:
    """Flush subnormal inputs and results to zero on the calling thread (or stop).
    Returns whether it was on before; False where the machine is not x86-64."""
    return bool(_set_bits(bool(enabled))) if SUPPORTED else False


@contextlib.contextmanager
def flushing_denormals():
    """``with flushing_denormals():`` runs its body with subnormals flushed to zero on
    this thread and restores the previous mode after it."""
    before = set_flush_denormal(True)
    try:
        yield SUPPORTED
    finally:
        set_flush_denormal(before)
