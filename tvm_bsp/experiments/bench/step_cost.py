"""Where the microseconds of one streamed frame go: a breakdown of a compiled model's ``step``.

On CPU targets a streamed frame is one kernel, ``fused_step`` (:mod:`tvm_bsp.passes.fuse_step`):
per layer the input projection and the sequence kernel with ``T = 1``, the head, the new
state's copy. :meth:`Session.push <tvm_bsp.runtime.Session.push>` calls it without the VM.
This module times

- each of the kernels it is made of alone, called directly with its packed constants (the
  same kernels as ``forward``'s, :func:`kernel_calls` with ``T = B = 1``);
- the same kernels of a twin build whose pruned matrices keep nothing (same shapes, knobs and
  code, an empty product): what a kernel costs besides its multiply-adds (call, epilogue or
  gate math, state copies, loop set-up);
- the fused kernel called directly, the VM's ``step`` (which wraps it) and a session's
  ``push`` (numpy in and out, input checks, the fused kernel).

:func:`breakdown` returns the rows: per layer the input projection's product and its fixed
part, the recurrent product and the sequence kernel's fixed part (gate math, state), then
what the fused kernel costs beyond its parts (the state copy, less the calls it saves) and
the session's numpy and checks; these add up to ``push``. A row beside the sum gives what the
VM's ``step`` would add.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "KernelCall",
    "breakdown",
    "empty_twin",
    "kernel_calls",
    "main",
    "median_us",
    "run",
    "table",
]


@dataclass
class KernelCall:
    """One ``call_tir`` of a Relax function, ready to call alone (batch 1)."""

    name: str
    func: Any
    args: list
    outputs: int

    def __call__(self) -> None:
        """Run the kernel on its bound arguments (outputs written in place)."""
        self.func(*self.args)


def median_us(fn: Callable[[], object], calls: int = 2000, rounds: int = 7) -> float:
    """Median over ``rounds`` of the mean microseconds of ``calls`` calls of ``fn``."""
    for _ in range(min(calls, 200)):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def _static(shape: Any) -> list[int]:
    return [int(d) if isinstance(d, int) or hasattr(d, "value") else 1 for d in shape]


def kernel_calls(cm: Any, function: str = "step") -> list[KernelCall]:
    """The kernel calls of ``function`` in order, with zero inputs of batch 1.

    Parameters
    ----------
    cm : tvm_bsp.CompiledModel
    function : str

    Returns
    -------
    list of KernelCall
        Non-constant inputs and outputs are zero tensors of the call's shapes (symbolic
        dimensions set to 1); constants are the packed arrays the VM passes.
    """
    import tvm
    from tvm import relax

    from tvm_bsp.passes.ir_utils import is_constant

    lib = cm.executable.mod
    found: list = []

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Call) and expr.op == tvm.ir.Op.get("relax.call_tir"):
            found.append(expr)

    relax.analysis.post_order_visit(cm.ir[function].body, visit)
    calls = []
    for call in found:
        name = call.args[0].name_hint
        args = []
        for arg in call.args[1].fields:
            if is_constant(arg):
                args.append(arg.value)
            else:
                args.append(tvm.runtime.tensor(np.zeros(_static(arg.ty.shape), np.float32)))
        out = call.ty_args[0]
        outs = list(out.fields) if hasattr(out, "fields") else [out]
        for o in outs:
            args.append(tvm.runtime.tensor(np.zeros(_static(o.shape), np.float32)))
        calls.append(KernelCall(name, lib.get_function(name, query_imports=True), args, len(outs)))
    return calls


def _vm_step(cm: Any, inputs: int, state_shape: tuple[int, ...]) -> Callable[[], object]:
    import tvm

    step = cm.session.vm["step"]
    x = tvm.runtime.tensor(np.zeros((1, inputs), np.float32))
    state = tvm.runtime.tensor(np.zeros(state_shape, np.float32))
    return lambda: step(x, state)


def breakdown(
    full: Any, empty: Any, inputs: int, state_shape: tuple[int, ...], unfused: Any = None
) -> list[dict]:
    """Rows of the breakdown of one streamed frame (microseconds, medians).

    Parameters
    ----------
    full : tvm_bsp.CompiledModel
        The build to break down (a CPU build: its ``step`` is the fused kernel).
    empty : tvm_bsp.CompiledModel
        Its twin with nothing kept in the pruned matrices (same kernels, empty products).
    inputs : int
        Input features.
    state_shape : tuple of int
        The state of batch 1 (``(layers, 1, H)`` for a GRU).
    unfused : tvm_bsp.CompiledModel, optional
        The same build compiled with ``fuse_step=False``: its VM ``step`` and ``push`` are
        timed beside (what a frame cost before FuseStep).

    Returns
    -------
    list of dict
        ``{"part", "us", "in_push"}`` rows; those with ``in_push`` sum to the session's
        ``push`` (the total row itself has ``in_push`` False).
    """
    kernels = kernel_calls(full, "forward")
    twins = {k.name: k for k in kernel_calls(empty, "forward")}
    (fused,) = kernel_calls(full, "step")
    fused_us = median_us(fused)
    vm_us = median_us(_vm_step(full, inputs, state_shape))
    rows = []
    kernel_total = 0.0
    for k in kernels:
        us = median_us(k)
        kernel_total += us
        fixed = min(median_us(twins[k.name]), us) if k.name in twins else us
        what = "recurrent product" if "sequence" in k.name else "input projection product"
        rest = "gate math, state copies" if "sequence" in k.name else "call, bias epilogue"
        rows.append({"part": f"{k.name}: {what}", "us": us - fixed, "in_push": True})
        rows.append({"part": f"{k.name}: fixed ({rest})", "us": fixed, "in_push": True})
    rows.append({"part": f"{fused.name}: beyond its parts (state copy, less the saved calls)",
                 "us": fused_us - kernel_total, "in_push": True})  # fmt: skip
    session = full.session
    session.reset()
    frame = np.zeros((1, inputs), np.float32)
    push_us = median_us(lambda: session.push(frame))
    rows.append({"part": "session push: numpy in/out, input checks", "us": push_us - fused_us,
                 "in_push": True})  # fmt: skip
    rows.append({"part": "total (session push)", "us": push_us, "in_push": False})
    rows.append({"part": "(beside) the VM's step over the fused kernel", "us": vm_us - fused_us,
                 "in_push": False})  # fmt: skip
    if unfused is not None:
        before = unfused.session
        before.reset()
        rows.append({"part": "(beside) unfused: VM step", "in_push": False,
                     "us": median_us(_vm_step(unfused, inputs, state_shape))})  # fmt: skip
        rows.append({"part": "(beside) unfused: session push", "in_push": False,
                     "us": median_us(lambda: before.push(frame))})  # fmt: skip
    return rows


def empty_twin(model: Any, masks: dict[str, np.ndarray]) -> tuple[Any, dict[str, np.ndarray]]:
    """A copy of ``model`` with the pruned weights zero and masks that keep nothing."""
    import copy

    import torch

    twin = copy.deepcopy(model)
    with torch.no_grad():
        for name in masks:
            getattr(twin, name).zero_()
    return twin, {name: np.zeros_like(mask) for name, mask in masks.items()}


def run(rates: tuple[int, ...] = (10, 103, 301)) -> list[dict]:
    """The breakdown of the reference GRU's streamed frame (1 thread) at each rate.

    Returns records ``{"model", "rate", "part", "us"}`` (:func:`breakdown`'s rows).
    """
    import tvm_bsp
    from tvm_bsp.experiments.bench.gru import HIDDEN, INPUT, LAYERS, MODEL, pruned, reference_gru

    model = reference_gru()
    records = []
    for rate in rates:
        pmodel, masks, grids, _ = pruned(model, rate)
        knobs = {"threads": 1}
        full = tvm_bsp.compile_model(pmodel, bspc=masks, grid=grids, knobs=knobs)
        twin, nothing = empty_twin(pmodel, masks)
        empty = tvm_bsp.compile_model(twin, bspc=nothing, grid=grids, knobs=knobs)
        unfused = tvm_bsp.compile_model(
            pmodel, bspc=masks, grid=grids, knobs=knobs, fuse_step=False
        )
        for row in breakdown(full, empty, INPUT, (LAYERS, 1, HIDDEN), unfused):
            records.append({"model": MODEL, "rate": rate, **row})
    return records


def table(records: list[dict]) -> str:
    """Markdown: one row per part, one column per rate (microseconds per frame)."""
    rates = sorted({r["rate"] for r in records})
    parts = list(dict.fromkeys(r["part"] for r in records))
    us = {(r["rate"], r["part"]): r["us"] for r in records}
    lines = ["| part | " + " | ".join(f"{r}x us" for r in rates) + " |"]
    lines.append("| --- " * (len(rates) + 1) + "|")
    for part in parts:
        cells = [f"{us[(r, part)]:.2f}" if (r, part) in us else "-" for r in rates]
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python scripts/bench_step_cost.py [--rates 10,103,301] [--json PATH]``."""
    import argparse
    import json
    import os
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10,103,301", help="comma list of rates")
    parser.add_argument("--json", type=Path, help="write the records here")
    args = parser.parse_args(argv)
    try:
        rates = tuple(int(v) for v in args.rates.split(","))
    except ValueError:
        parser.error(f"--rates {args.rates!r} is not a comma list of integers")
    from tvm_bsp.runtime.session import configure_threads

    configure_threads(1)
    records = run(rates)
    print(table(records))
    if args.json:
        from tvm_bsp.bspc import atomic_write

        text = json.dumps({"load": os.getloadavg(), "records": records}, indent=1)
        atomic_write(args.json, lambda f: f.write(text.encode()))
    return 0
