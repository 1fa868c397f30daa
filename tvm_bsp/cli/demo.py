"""``tvm-bsp demo``: the parser and its handler; the driver is :mod:`tvm_bsp.experiments.demo.run`.

Exit codes: 0 success (arm64 skipped with a note when the emulator is not set up), 1 a
failure with a message on stderr, 2 bad usage.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tvm_bsp.cli.args import (
    add_command,
    add_json_option,
    add_progress_option,
    add_threads_option,
    fail,
    paper_rate,
    paper_rates,
)

_DEFAULT_SIZE_RATES = "10,19,29,43,80,103,153,245,301"


_DEMO_HELP = (
    "the main job: corpus -> GRU -> BSP pruning -> TVM dense/BSPC builds for host and "
    "arm64 run over RPC; PER and latency side by side"
)
_DEMO_DESCRIPTION = (
    "Generate a small synthetic speech corpus, train a small GRU, BSP-prune it "
    "(ADMM + masked retraining), compile dense and BSPC modules for the host and for arm64, "
    "run all of them through local RPC servers (arm64: under qemu), and print PER and "
    "per-frame latency side by side, plus the BSPC size table of RTMobile's reference GRU. "
    "Corpus and models are cached under --work (a second run is faster)."
)


def add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tvm-bsp demo`` on an ``add_subparsers()`` object; return its parser."""
    p = add_command(subparsers, "demo", handle, _DEMO_HELP, _DEMO_DESCRIPTION)
    p.add_argument("--work", type=Path, default=Path(".cache/demo"), help="cache/work folder")
    p.add_argument("--quick", action="store_true", help="tiny corpus and model (minutes)")
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="train the demo's own small models instead of using the shipped Table I models "
        "(default: the shipped 2x512 dense GRU and its BSP row; --quick implies this)",
    )
    p.add_argument("--rate", type=paper_rate, default=None, help="BSP compression (default 10)")
    p.add_argument("--no-arm64", action="store_true", help="skip the arm64 (qemu) builds")
    add_json_option(p, "write one JSON record per build")
    p.add_argument("--plot", type=Path, default=None, help="plot file (default WORK/demo.png)")
    p.add_argument(
        "--sizes-only",
        action="store_true",
        help="only the size table of the reference GRU (2x1024) at --rates (about 7 s)",
    )
    p.add_argument(
        "--rates",
        type=paper_rates,
        default=None,
        help=f"rates of the size table (default {_DEFAULT_SIZE_RATES} with --sizes-only, "
        "10,80,301 otherwise)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the size table's weights")
    add_threads_option(p, "torch", 1, ": on a shared 2-core machine 2 threads ran 10-40x slower")
    add_progress_option(p)
    return p


def handle(args: argparse.Namespace) -> int:
    """Handler of ``tvm-bsp demo``."""
    from tvm_bsp.experiments.demo.sizes import run_demo as run_sizes

    if args.sizes_only:
        rates = args.rates or paper_rates(_DEFAULT_SIZE_RATES)
        return run_sizes(rates, args.seed, args.json)
    from tvm_bsp.experiments.demo.run import run_full

    try:
        return run_full(args)
    except (RuntimeError, ConnectionError, TimeoutError) as err:
        return fail("demo", str(err))
