"""The ``tvm-bsp`` command (also ``python -m tvm_bsp``).

Exit codes: 0 success, 1 a failure with a message on stderr, 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _rates(text: str) -> list[int]:
    from tvm_bsp.prune import PAPER_SPLITS

    try:
        rates = [int(r) for r in text.split(",") if r]
    except ValueError:
        raise argparse.ArgumentTypeError(f"rates must be integers, got {text!r}") from None
    unknown = [r for r in rates if r not in PAPER_SPLITS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"no column/row split known for rates {unknown}; choose from {sorted(PAPER_SPLITS)}"
        )
    return rates


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``tvm-bsp`` command."""
    parser = argparse.ArgumentParser(
        prog="tvm-bsp",
        description="Block-based structured pruning (BSP) of GRU/LSTM models and BSPC sparse "
        "kernels on Apache TVM.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="the main job on embedded defaults: BSP-prune the reference GRU, store as BSPC, "
        "print the size/compression table",
        description="BSP-prune the reference GRU's weight matrices (2 layers x 1024, input 39) "
        "at RTMobile's rates, convert them to BSPC, and print achieved compression and bytes "
        "of BSPC vs scipy CSR/BSR vs dense.",
    )
    demo.add_argument(
        "--rates",
        type=_rates,
        default=[10, 19, 29, 43, 80, 103, 153, 245, 301],
        help="comma-separated overall compression rates (default: the paper's)",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    demo.add_argument("--json", type=Path, default=None, help="also write the records as JSON")
    from tvm_bsp.tune.cli import add_rpc_server_parser, add_tune_parser

    add_tune_parser(sub)
    add_rpc_server_parser(sub)
    from tvm_bsp.cli_speech import add_prune_parser, add_train_parser

    add_train_parser(sub)
    add_prune_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from tvm_bsp.demo import run_demo

            return run_demo(args.rates, args.seed, args.json)
        if hasattr(args, "handler"):
            return args.handler(args)
        if hasattr(args, "func"):
            return args.func(args)
    except (ValueError, OSError) as err:
        print(f"tvm-bsp {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
