"""Per-frame latency of RTMobile's reference GRU (2 x 1024, input 39): our BSPC builds vs peers.

For each compression rate of RTMobile's Table II (BSP masks from ``bsp_mask_at_rate`` with the
column rate of ``PAPER_SPLITS``, grids 96 x 16 for the 3072 x 1024 matrices and 96 x 4 for the
3072 x 39 one; ``--grid 96x16,384x16`` times several grids side by side, records carry
``grid``), the reference model is compiled with :func:`tvm_bsp.compile_model` and timed

``stream``     frame by frame: ``step(x_t, state)`` per frame, state fed back (per-frame cost
               of a streaming recognizer, call overhead included);
``utterance``  one ``forward`` over ``T = 200`` frames, divided by ``T``;

next to (rate 1 only, the dense model): our dense build (``tvm_dense``), ``torch.nn.GRU`` with
1 and 2 threads (``torch_dense_1t`` / ``torch_dense_2t``) and ONNX Runtime's GRU
(``onnxruntime``; from ``torch.onnx.export`` when it works, else the two GRU nodes built with
``onnx.helper``). Our builds are compiled and timed twice, for 1 thread and for all
``--threads`` (records carry ``threads``); speedups divide our dense time by the BSPC time.
Every number is the median of repeated runs. The tables mirror RTMobile's Table II (their
CPU column: Kryo 485; here: this host). Run it on a quiet machine: a process holding a core
stalls every barrier of the parallel time loops. ``--load loaded`` measures exactly that, with
``--load-processes`` busy processes competing for the cores
(:mod:`tvm_bsp.experiments.bench.load`), and
``--load both`` reports every build quiet and loaded side by side (records carry ``load``).

This module holds the reference model, the measurement plan (:func:`run`) and the command
line; the timers and the accuracy check are in
:mod:`tvm_bsp.experiments.bench.gru_timers`, the tables
and RTMobile's figures in :mod:`tvm_bsp.experiments.bench.gru_table`.

Usage::

    tvm-bsp bench gru [--quick] [--rates 1,10] [--grid 96x16[,384x16]] [--load both] [--json PATH]
    python scripts/bench_gru.py [--quick] [--json results/bench_gru.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tvm_bsp.bspc.grid import parse_grid_list as parse_grids
from tvm_bsp.experiments.bench.gru_table import PAPER_CPU_SPEEDUP, PAPER_CPU_US, table
from tvm_bsp.experiments.bench.gru_timers import check, time_onnxruntime, time_torch, time_tvm
from tvm_bsp.experiments.bench.load import LOAD_MODES, competing_load, modes_of
from tvm_bsp.experiments.bench.roofline import bandwidth_table, build_roofline

if TYPE_CHECKING:
    import torch

__all__ = [
    "GRIDS",
    "HIDDEN",
    "INPUT",
    "LAYERS",
    "MODEL",
    "PAPER_CPU_SPEEDUP",
    "PAPER_CPU_US",
    "QUICK_RATES",
    "RATES",
    "add_arguments",
    "grids_for",
    "main",
    "parse_grid_list",
    "pruned",
    "reference_gru",
    "run",
    "run_args",
    "table",
]

RATES = (1, 10, 19, 29, 43, 80, 103, 153, 245, 301)
QUICK_RATES = (1, 10, 103, 301)
MODEL = "gru-2x1024-in39"
INPUT, HIDDEN, LAYERS = 39, 1024, 2
GRIDS = {(3 * HIDDEN, HIDDEN): (96, 16), (3 * HIDDEN, INPUT): (96, 4)}

#: ``{weight shape: (row blocks, column blocks)}`` of the reference model's matrices.
ShapeGrids = dict[tuple[int, int], tuple[int, int]]


def grids_for(row_blocks: int, col_blocks: int) -> ShapeGrids:
    """The per-shape grids of the reference model for a ``ROWSxCOLS`` grid of its H-wide
    matrices (the 39-column input matrix keeps 4 column stripes).

    Parameters
    ----------
    row_blocks, col_blocks : int
        The grid of the ``3H x H`` matrices.

    Returns
    -------
    ShapeGrids
        ``{(3H, H): (row_blocks, col_blocks), (3H, 39): (row_blocks, 4)}``.
    """
    return {(3 * HIDDEN, HIDDEN): (row_blocks, col_blocks), (3 * HIDDEN, INPUT): (row_blocks, 4)}


def parse_grid_list(text: str) -> list[tuple[int, int]]:
    """``"96x16,384x16"`` -> ``[(96, 16), (384, 16)]`` within the reference model's shapes.

    Parameters
    ----------
    text : str
        Comma list of ``ROWSxCOLS`` grids.

    Returns
    -------
    list of (int, int)
        The grids, in order.

    Raises
    ------
    ValueError
        For a malformed or repeated item, or a grid finer than the matrices (rows beyond
        ``3H``, columns beyond the input matrix's 39).
    """
    grids = parse_grids(text)
    for rb, cb in grids:
        if not (rb <= 3 * HIDDEN and cb <= INPUT):
            raise ValueError(
                f"grid {rb}x{cb}: rows must be in [1, {3 * HIDDEN}] and columns in [1, {INPUT}] "
                "(the input matrix has 39 columns)"
            )
    return grids


def reference_gru() -> torch.nn.GRU:
    """The dense reference model, seeded.

    Returns
    -------
    torch.nn.GRU
        ``GRU(INPUT, HIDDEN, LAYERS)`` in eval mode, weights from ``torch.manual_seed(0)``.
    """
    import torch

    torch.manual_seed(0)
    return torch.nn.GRU(INPUT, HIDDEN, LAYERS).eval()


def pruned(
    model: torch.nn.GRU, rate: int, grids: ShapeGrids | None = None
) -> tuple[torch.nn.GRU, dict[str, np.ndarray], dict[str, tuple[int, int]], float]:
    """A copy of ``model`` with BSP-pruned weights (zero outside the masks) and the masks.

    Parameters
    ----------
    model : torch.nn.GRU
        The dense reference model (left unchanged).
    rate : int
        Compression rate, a key of :data:`tvm_bsp.prune.PAPER_SPLITS` (its column rate is
        used).
    grids : ShapeGrids, optional
        Per-shape grids; default :data:`GRIDS`.

    Returns
    -------
    (torch.nn.GRU, dict, dict, float)
        The pruned copy, ``{weight name: bool mask}``, ``{weight name: grid}`` and the
        achieved compression (weights over kept weights).
    """
    import torch

    from tvm_bsp.prune import PAPER_SPLITS, bsp_mask_at_rate

    col_rate, _ = PAPER_SPLITS[rate]
    copy = torch.nn.GRU(INPUT, HIDDEN, LAYERS).eval()
    copy.load_state_dict(model.state_dict())
    masks, kept, size = {}, 0, 0
    with torch.no_grad():
        for name, p in copy.named_parameters():
            if not name.startswith("weight"):
                continue
            rb, cb = (grids or GRIDS)[tuple(p.shape)]
            mask = bsp_mask_at_rate(p.numpy(), rb, cb, rate, col_rate)
            p.mul_(torch.from_numpy(mask))
            masks[name] = mask
            kept += int(mask.sum())
            size += mask.size
    by_name = {n: (grids or GRIDS)[m.shape] for n, m in masks.items()}
    return copy, masks, by_name, size / kept


def run(
    rates: Sequence[int],
    T: int,
    repeat: int,
    threads: int,
    grids: ShapeGrids | list[ShapeGrids],
    peers: bool = True,
    loads: Sequence[str] = ("quiet",),
    load_processes: int = 1,
) -> tuple[list[dict], dict]:
    """Measure everything; returns ``(records, notes)``.

    ``grids`` is one per-shape grid mapping (:func:`grids_for`) or a list of them: every
    BSPC rate is then built and timed once per grid (records carry ``grid``, ``"RxC"`` of
    the H-wide matrices), the dense build once.

    Our builds are timed first, and torch keeps one thread until its own turn: OpenMP and
    ONNX Runtime workers spin after their work and would steal the cores from TVM's pool.

    Parameters
    ----------
    rates : sequence of int
        Compression rates out of :data:`RATES` (1 is the dense build).
    T : int
        Frames of the utterance.
    repeat : int
        Timed runs per measurement.
    threads : int
        The most threads of our builds (each is also timed with 1) and ONNX Runtime's.
    grids : ShapeGrids or list of ShapeGrids
        The grid(s) of the BSPC builds.
    peers : bool
        Also time ``torch.nn.GRU`` (1 and 2 threads) and ONNX Runtime.
    loads : sequence of str
        Conditions of every measurement, side by side: ``"quiet"``, and ``"loaded"`` with
        ``load_processes`` busy processes (:func:`tvm_bsp.experiments.bench.load.competing_load`)
        competing for the cores; records carry ``load``.
    load_processes : int
        Busy processes of the ``"loaded"`` condition.

    Returns
    -------
    (list of dict, dict)
        One record per build, thread count and mode (``us_per_frame``, ``max_abs_error``,
        ...), and notes on the run (load averages, TVM pool size, ONNX export path).

    Raises
    ------
    RuntimeError
        If a compiled model differs from torch by more than 1e-3.
    """
    import torch

    import tvm_bsp
    from tvm_bsp.runtime.session import configure_threads

    torch.set_num_threads(1)
    # TVM's pool gets its workers when first used and cannot grow afterwards: create it with
    # the most threads, then switch between 1 and ``threads`` per build.
    pool = configure_threads(threads)

    records: list[dict] = []
    notes: dict = {"load_before": os.getloadavg(), "tvm_pool_threads": pool}
    notes["load_processes"] = load_processes if "loaded" in loads else 0
    model = reference_gru()

    def add(mode: str, rate: int, impl: str, us: float, **extra: object) -> None:
        records.append(
            {"model": MODEL, "mode": mode, "rate": rate, "impl": impl, "us_per_frame": us, **extra}
        )

    def conditions():
        """``(load, context)`` per condition: the timings run inside the context."""
        for load in loads:
            yield load, competing_load(load_processes if load == "loaded" else 0)

    grid_list = grids if isinstance(grids, list) else [grids]
    builds = [(rate, None) for rate in rates if rate == 1]
    builds += [(rate, g) for rate in rates if rate != 1 for g in grid_list]
    for rate, grid in builds:
        if grid is None:
            pmodel, impl, achieved, kwargs, label = model, "tvm_dense", 1.0, {}, {}
        else:
            pmodel, masks, by_name, achieved = pruned(model, rate, grid)
            impl, kwargs = "bspc", {"bspc": masks, "grid": by_name}
            label = {"grid": "{}x{}".format(*grid[(3 * HIDDEN, HIDDEN)])}
        for tvm_threads in sorted({1, threads}):
            start = time.time()
            cm = tvm_bsp.compile_model(pmodel, knobs={"threads": tvm_threads}, **kwargs)
            compile_s = time.time() - start
            error = check(cm, pmodel, T)
            if error > 1e-3:
                raise RuntimeError(f"rate {rate}: compiled model differs from torch by {error}")
            extra = {"achieved_rate": round(achieved, 2), "compile_s": round(compile_s, 1)}
            roof = build_roofline(cm, T, LAYERS * HIDDEN * 4)
            for load, context in conditions():
                with context:
                    times = time_tvm(cm, pmodel, T, repeat, tvm_threads)
                for mode, us in times.items():
                    nbytes, bound = roof[mode]
                    add(mode, rate, impl, us, threads=tvm_threads, max_abs_error=error,
                        load=load, bytes_per_frame=nbytes, roofline_us=round(bound, 2),
                        roofline_ratio=round(us / bound, 2), **extra, **label)  # fmt: skip
        where = f" grid {label['grid']}" if label else ""
        print(f"rate {rate:>3}{where}: done", file=sys.stderr, flush=True)
    for load, context in conditions() if peers else ():
        with context:
            for threads_ in (1, 2):
                for mode, us in time_torch(model, T, repeat, threads_).items():
                    add(mode, 1, f"torch_dense_{threads_}t", us, load=load)
            ort_times, how = time_onnxruntime(model, T, repeat, threads)
        notes["onnx_export"] = how
        for mode, us in ort_times.items():
            add(mode, 1, "onnxruntime", us, threads=threads, load=load)
    notes["load_after"] = os.getloadavg()
    notes["read_bandwidth_gb_s"] = {f"{size >> 10} KiB": round(gbs, 1)
                                   for size, gbs in bandwidth_table(rounds=1).items()}  # fmt: skip
    return records, notes


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the benchmark's options (``--quick``, ``--json``, ...) to ``parser``; return it.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser (``tvm-bsp bench gru``'s or the script's).

    Returns
    -------
    argparse.ArgumentParser
        ``parser``.
    """
    parser.add_argument("--quick", action="store_true", help=f"rates {QUICK_RATES}, fewer runs")
    parser.add_argument("--json", type=Path, help="write the records here")
    parser.add_argument("--frames", type=int, default=200, help="utterance length T")
    parser.add_argument(
        "--grid",
        default="96x16",
        help="block grid of the 3072 x 1024 matrices, or a comma list timed side by side "
        "(e.g. 96x16,384x16; the 3072 x 39 matrix keeps 4 column stripes)",
    )
    parser.add_argument(
        "--rates",
        help=f"comma list of rates out of {','.join(map(str, RATES))} (default: all, or --quick's)",
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="skip torch and ONNX Runtime (our builds only)"
    )
    parser.add_argument(
        "--load",
        choices=LOAD_MODES,
        default="quiet",
        help="measure with busy processes competing for the cores (loaded), or both "
        "conditions side by side",
    )
    parser.add_argument(
        "--load-processes",
        type=int,
        default=1,
        help="busy processes of the loaded condition (default 1: one core taken)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads of ONNX Runtime (TVM: TVM_NUM_THREADS, default all cores)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python scripts/bench_gru.py``).

    Parameters
    ----------
    argv : list of str, optional
        Arguments; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status (2 for bad options).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    return run_args(add_arguments(parser).parse_args(argv))


def run_args(args: argparse.Namespace) -> int:
    """Run the benchmark with parsed options (see :func:`add_arguments`).

    Prints the tables; with ``--json PATH`` writes the records to ``PATH`` and the run's
    context to ``PATH``'s ``.details.json`` sidecar (both atomically).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options.

    Returns
    -------
    int
        Exit status (2 for bad options).
    """
    rates = QUICK_RATES if args.quick else RATES
    if args.rates:
        try:
            rates = tuple(int(v) for v in args.rates.split(","))
        except ValueError:
            print(f"error: --rates {args.rates!r} is not a comma list of integers", file=sys.stderr)
            return 2
        unknown = [r for r in rates if r not in RATES]
        if unknown:
            print(f"error: --rates {unknown} not among {list(RATES)}", file=sys.stderr)
            return 2
    repeat = 3 if args.quick else 9
    try:
        grid_list = [grids_for(rb, cb) for rb, cb in parse_grid_list(args.grid)]
    except ValueError as err:
        print(f"error: --grid: {err}", file=sys.stderr)
        return 2
    grids = grid_list[0] if len(grid_list) == 1 else grid_list
    if args.load_processes < 0:
        print(f"error: --load-processes must be >= 0, got {args.load_processes}", file=sys.stderr)
        return 2
    loads = modes_of(args.load)
    records, notes = run(
        rates, args.frames, repeat, args.threads, grids, peers=not args.no_peers,
        loads=loads, load_processes=args.load_processes,
    )  # fmt: skip
    for load in loads:
        if len(loads) > 1:
            busy = f" ({args.load_processes} busy processes)" if load == "loaded" else ""
            print(f"\n## {load}{busy}")
        print(table([r for r in records if r.get("load", "quiet") == load]))
    if args.json:
        from tvm_bsp.bspc import atomic_write

        args.json.parent.mkdir(parents=True, exist_ok=True)
        details = {
            "host": {
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "processor": platform.processor(),
            },
            "frames": args.frames,
            "grids": [{f"{m}x{n}": g for (m, n), g in grid.items()} for grid in grid_list],
            "notes": notes,
        }
        # the contract: PATH holds the list of records; the run's context goes beside it
        sidecar = args.json.with_name(args.json.stem + ".details.json")
        atomic_write(sidecar, lambda f: f.write(json.dumps(details, indent=1).encode()))
        atomic_write(args.json, lambda f: f.write(json.dumps(records, indent=1).encode()))
    return 0
