"""A memory roofline for the GRU benchmark: the time this machine's bandwidth allows a frame.

A streamed frame of a BSPC model reads every packed weight array once (values, column indices,
panel pointers) and the state; at high compression that is little data, so the question is
how close the measured time comes to what the memory system allows. Two parts:

- :func:`read_bandwidth` measures the read bandwidth of this machine at a working-set size,
  with a vectorized TVM kernel compiled for the benchmark's target (the code generator the
  models use): one thread sums a buffer of that size in four streams at once, repeated so
  that a buffer that fits in a cache is read from it; the best repetition counts (a bound).
  :func:`bandwidth_table` does it for a ladder of sizes.
- :func:`kernel_bytes` finds, in a compiled model's IR, the constant bytes (packed weights,
  index arrays, biases) each kernel call of a Relax function reads;
  :func:`frame_bytes` turns them into the bytes a frame touches in ``stream`` mode (every
  constant of ``step``) and in ``utterance`` mode (the sequence kernels' constants every
  frame, the mat-mat kernels' once per utterance), plus the state read and written.

:func:`roofline_us` is then the time one thread takes to read that many bytes, measured at
exactly that working-set size (read again and again, as frames do). The ratio of the
measured time to it says how far a build is from the memory limit (1 would be at the limit;
compute, call overhead and barriers make up the rest).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "BANDWIDTH_SIZES",
    "bandwidth_table",
    "build_roofline",
    "frame_bytes",
    "kernel_bytes",
    "read_bandwidth",
    "roofline_us",
]

#: Working-set sizes of the bandwidth ladder (bytes): L1, L2, L3 and DRAM on common CPUs.
BANDWIDTH_SIZES = (32 << 10, 256 << 10, 1 << 20, 8 << 20, 64 << 20, 256 << 20)

_LANES = 64  # floats of one row: 4 AVX-512 / 16 NEON vectors
_STREAMS = 4  # rows read side by side from four regions (the way a panel walk reads several
# arrays at once: one sequential stream does not keep enough misses in flight)


def _sum_kernel():
    from tvm.script import tirx as T

    S, L = _STREAMS, _LANES

    @T.prim_func
    def read_sum(a_h: T.handle, out_h: T.handle):
        T.func_attr({"tirx.noalias": True})
        n = T.int64()
        A = T.match_buffer(a_h, (S, n, L), "float32")
        O = T.match_buffer(out_h, (L,), "float32")
        acc = T.alloc_buffer((S * L,), "float32", scope="local")
        for i in T.vectorized(S * L):
            acc[i] = T.float32(0)
        for r in range(n):
            for s in T.unroll(S):
                for i in T.vectorized(L):
                    acc[s * L + i] = acc[s * L + i] + A[s, r, i]
        for i in T.vectorized(L):
            O[i] = acc[i]
        for s in range(1, S):
            for i in T.vectorized(L):
                O[i] = O[i] + acc[s * L + i]

    return read_sum


def read_bandwidth(nbytes: int, target: Any = "host", min_seconds: float = 0.02) -> float:
    """Read bandwidth (GB/s) of one thread over a working set of ``nbytes``.

    Parameters
    ----------
    nbytes : int
        Size of the buffer read (rounded to a multiple of 1 KiB).
    target : str, dict or tvm.target.Target
        What the kernel is compiled for (:func:`tvm_bsp.kernels.targets.resolve_target`).
    min_seconds : float
        Time of one timed repetition (the buffer is read as often as that takes).

    Returns
    -------
    float
        The best of the repetitions (a bound), in 1e9 bytes per second.
    """
    import tvm

    from tvm_bsp.kernels.targets import resolve_target

    executable = _compiled(str(resolve_target(target)))
    dev = tvm.cpu()
    rows = max(1, nbytes // (4 * _LANES * _STREAMS))
    a = tvm.runtime.tensor(np.ones((_STREAMS, rows, _LANES), np.float32), dev)
    out = tvm.runtime.tensor(np.zeros(_LANES, np.float32), dev)
    once = executable.time_evaluator("read_sum", dev, number=1, repeat=3)(a, out).median
    number = max(1, int(min_seconds / max(once, 1e-7)))
    timer = executable.time_evaluator("read_sum", dev, number=number, repeat=7, min_repeat_ms=0)
    seconds = timer(a, out).min  # a bound: the best repetition
    if not np.allclose(out.numpy(), rows * _STREAMS):
        raise RuntimeError("the bandwidth kernel summed wrongly")
    return _STREAMS * rows * _LANES * 4 / seconds / 1e9


_CACHE: dict[str, Any] = {}


def _compiled(target: str) -> Any:
    import tvm

    if target not in _CACHE:
        func = _sum_kernel().with_attr("global_symbol", "read_sum")
        _CACHE[target] = tvm.compile(tvm.IRModule({"read_sum": func}), target=target).jit()
    return _CACHE[target]


def bandwidth_table(
    sizes: Sequence[int] = BANDWIDTH_SIZES, target: Any = "host", rounds: int = 3
) -> dict[int, float]:
    """``{working-set bytes: GB/s}`` for each of ``sizes`` (median of ``rounds``)."""
    return {
        size: statistics.median(read_bandwidth(size, target) for _ in range(rounds))
        for size in sizes
    }


def kernel_bytes(ir: Any, function: str) -> dict[str, int]:
    """Constant bytes per kernel that ``function`` of a lowered module calls.

    Parameters
    ----------
    ir : tvm.IRModule
        A compiled model's lowered module (``CompiledModel.ir``).
    function : str
        ``"step"`` or ``"forward"``.

    Returns
    -------
    dict of str to int
        ``{kernel name: bytes of the constants passed to it}`` (a kernel called twice, e.g.
        one per layer with the same name, sums both calls' constants).
    """
    from tvm import relax

    from tvm_bsp.passes.ir_utils import is_constant

    calls: dict[str, int] = {}
    func = ir[function]

    def visit(expr: Any) -> None:
        if not isinstance(expr, relax.Call) or expr.op != tvm_call_tir():
            return
        callee, args = expr.args[0], expr.args[1]
        name = callee.name_hint
        consts = [a for a in args.fields if is_constant(a)]
        calls[name] = calls.get(name, 0) + sum(_nbytes(c) for c in consts)

    relax.analysis.post_order_visit(func.body, visit)
    return calls


def tvm_call_tir() -> Any:
    """The ``relax.call_tir`` operator."""
    import tvm

    return tvm.ir.Op.get("relax.call_tir")


def _nbytes(const: Any) -> int:
    data = const.value
    return int(np.prod(data.shape)) * np.dtype(str(data.dtype)).itemsize


def frame_bytes(ir: Any, mode: str, frames: int, state_bytes: int) -> int:
    """Bytes one frame touches: ``mode`` ``"stream"`` or ``"utterance"`` of ``frames`` frames.

    ``stream``: every constant of ``step`` plus the state read and written. ``utterance``:
    the sequence kernels' constants (read every step), the other kernels' (mat-mat input
    projection, head) over ``frames``, plus the state.
    """
    if mode == "stream":
        return sum(kernel_bytes(ir, "step").values()) + 2 * state_bytes
    per_kernel = kernel_bytes(ir, "forward")
    recurrent = sum(b for name, b in per_kernel.items() if "sequence" in name)
    other = sum(b for name, b in per_kernel.items() if "sequence" not in name)
    return int(recurrent + other / frames) + 2 * state_bytes


def roofline_us(nbytes: int, target: Any = "host") -> float:
    """Microseconds one thread takes to read ``nbytes``, read again and again like frames.

    Measured directly at that working-set size (:func:`read_bandwidth`), so a working set that
    fits a cache level is timed from it, and one between two levels as it really behaves.
    """
    return nbytes / (read_bandwidth(nbytes, target) * 1e9) * 1e6


def build_roofline(cm: Any, frames: int, state_bytes: int) -> dict[str, tuple[int, float]]:
    """``{mode: (bytes per frame, microseconds one thread needs to read them)}`` of a build,
    for ``stream`` and ``utterance`` (of ``frames`` frames); ``state_bytes`` of batch 1."""
    out = {}
    for mode in ("stream", "utterance"):
        nbytes = frame_bytes(cm.ir, mode, frames, state_bytes)
        out[mode] = (nbytes, roofline_us(nbytes))
    return out
