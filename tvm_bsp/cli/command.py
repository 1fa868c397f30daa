"""The ``tvm-bsp`` command (also ``python -m tvm_bsp``).

Exit codes: 0 success, 1 a failure with a message on stderr, 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``tvm-bsp`` command."""
    parser = argparse.ArgumentParser(
        prog="tvm-bsp",
        description="Block-based structured pruning (BSP) of GRU/LSTM models and BSPC sparse "
        "kernels on Apache TVM.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from tvm_bsp.cli.demo import add_demo_parser

    add_demo_parser(sub)
    from tvm_bsp.cli.tune import add_rpc_server_parser, add_tune_parser

    add_tune_parser(sub)
    add_rpc_server_parser(sub)
    from tvm_bsp.cli.speech import add_prune_parser, add_train_parser

    add_train_parser(sub)
    add_prune_parser(sub)
    from tvm_bsp.cli.deploy import add_bench_parser, add_compile_parser, add_deploy_parser

    add_compile_parser(sub)
    add_deploy_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
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
