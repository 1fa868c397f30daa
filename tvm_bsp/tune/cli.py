"""``tvm-bsp tune`` and ``tvm-bsp rpc-server`` subcommands.

``tvm-bsp tune --target arm64 --tracker HOST:PORT --key KEY --trials N --db DIR BSPC_DIR``
tunes the BSPC kernel (batch 1 by default) of every matrix of a directory written by
:func:`tvm_bsp.prune.export_bspc`, appending records to the database ``DIR``. Without
``--tracker`` the candidates run on this machine (host targets).

``tvm-bsp rpc-server --tracker HOST:PORT --key KEY [--host 127.0.0.1]`` runs
``python -m tvm.exec.rpc_server`` registered with the tracker (loopback by default).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "add_rpc_server_parser",
    "add_tune_parser",
    "run_rpc_server",
    "run_tune",
]


def _tracker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def add_tune_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``tune`` subcommand (handler in ``func``) to an ``add_subparsers()`` object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction

    Returns
    -------
    argparse.ArgumentParser
        The subcommand's parser.
    """
    p = subparsers.add_parser(
        "tune",
        help="tune the BSPC kernels of an exported model on the host or an RPC device",
        description="Tune the knobs of the BSPC kernel of every matrix in a directory written "
        "by tvm_bsp.prune.export_bspc; every measurement is appended to the database "
        "directory (rerunning resumes).",
    )
    p.add_argument("bspc_dir", type=Path, metavar="MODEL_OR_BSPC_DIR", help="BSPC export dir")
    p.add_argument("--db", type=Path, required=True, help="tuning database directory")
    p.add_argument(
        "--target", default="host", help="host, arm64, opencl-mali, opencl-adreno (default host)"
    )
    p.add_argument("--tracker", type=_tracker, default=None, help="RPC tracker HOST:PORT")
    p.add_argument("--key", default=None, help="device key registered with the tracker")
    p.add_argument("--trials", type=int, default=16, help="candidate configs per matrix")
    p.add_argument("--batch", type=int, default=1, help="frames per call (default 1)")
    p.add_argument(
        "--epilogue", default=None, choices=["none", "sigmoid", "tanh"], help="activation"
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per measurement")
    p.add_argument("--seed", type=int, default=0, help="seed of the random candidates")
    p.add_argument("--json", type=Path, default=None, help="also write a summary as JSON")
    p.set_defaults(func=run_tune)
    return p


def run_tune(args: argparse.Namespace) -> int:
    """Handler of ``tvm-bsp tune``; returns the exit code (1 when the device dropped off)."""
    from tvm_bsp.prune import load_bspc_dir
    from tvm_bsp.tune.tuner import TuningError, summarize, tune_spmm

    if (args.tracker is None) != (args.key is None):
        print("tvm-bsp tune: error: --tracker and --key go together", file=sys.stderr)
        return 2
    if args.trials < 1:
        print("tvm-bsp tune: error: --trials must be positive", file=sys.stderr)
        return 2
    matrices, _index = load_bspc_dir(args.bspc_dir)
    summary: dict[str, Any] = {}
    status = 0
    for name, bspc in matrices.items():
        print(f"== {name} {bspc.shape[0]}x{bspc.shape[1]}", flush=True)
        try:
            res = tune_spmm(
                bspc,
                args.db,
                batch=args.batch,
                target=args.target,
                epilogue=args.epilogue,
                trials=args.trials,
                tracker=args.tracker,
                key=args.key,
                seed=args.seed,
                session_timeout=args.timeout,
                log=lambda m: print(m, flush=True),
            )
        except TuningError as err:
            print(f"tvm-bsp tune: error: {err}", file=sys.stderr)
            summary[name] = {"error": str(err), "records_kept": err.records_kept}
            status = 1
            break
        summary[name] = dict(summarize(res))
        speed = f" ({res.speedup:.2f}x)" if res.speedup else ""
        print(f"   default {res.default_us} us -> best {res.best_us} us{speed}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1))
    return status


def add_rpc_server_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``rpc-server`` subcommand (handler in ``func``).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction

    Returns
    -------
    argparse.ArgumentParser
    """
    p = subparsers.add_parser(
        "rpc-server",
        help="run a TVM RPC server registered with a tracker under a device key",
        description="Wraps `python -m tvm.exec.rpc_server`; binds to loopback unless --host "
        "says otherwise.",
    )
    p.add_argument("--tracker", type=_tracker, required=True, help="tracker HOST:PORT")
    p.add_argument("--key", required=True, help="device key")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9090, help="first port to try (default 9090)")
    p.add_argument("--port-end", type=int, default=9199, help="last port to try")
    p.set_defaults(func=run_rpc_server)
    return p


def rpc_server_command(args: argparse.Namespace) -> list[str]:
    """The ``python -m tvm.exec.rpc_server`` command line for parsed ``rpc-server`` args."""
    host, port = args.tracker
    return [
        sys.executable, "-m", "tvm.exec.rpc_server",
        "--tracker", f"{host}:{port}", "--key", args.key,
        "--host", args.host, "--port", str(args.port), "--port-end", str(args.port_end),
    ]  # fmt: skip


def run_rpc_server(args: argparse.Namespace) -> int:
    """Handler of ``tvm-bsp rpc-server``: run the server until it exits (Ctrl-C stops it)."""
    try:
        return subprocess.call(rpc_server_command(args))
    except KeyboardInterrupt:
        return 0
