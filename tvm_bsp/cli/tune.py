"""``tvm-bsp tune`` and ``tvm-bsp rpc-server`` subcommands.

``tvm-bsp tune --target arm64 --tracker HOST:PORT --key KEY --trials N --db DIR MODEL``

- ``MODEL`` a model file of ``tvm-bsp train`` / ``prune`` (``OUT/model.pt``, BSPC weights from
  ``OUT/bspc/`` when present): tunes the knobs of every recurrent layer's kernels for
  streaming (:func:`tvm_bsp.tune.tune_model`); ``compile_model(..., tuned=DIR)`` and
  ``tvm-bsp compile`` apply the records.
- ``MODEL`` a directory written by :func:`tvm_bsp.prune.export_bspc` (``index.json``): tunes
  the BSPC kernel (batch 1 by default) of every matrix (:func:`tvm_bsp.tune.tune_spmm`).

Records are appended to the database ``DIR`` (rerunning resumes). Without ``--tracker`` the
candidates run on this machine (host targets).

``tvm-bsp tune --block-search [--grids 6x4,12x8] [--rates 10,20] --json PATH --plot PATH
[--quick] DENSE_MODEL`` runs the block-size search (:mod:`tvm_bsp.experiments.block_search`).

``tvm-bsp rpc-server --tracker HOST:PORT --key KEY [--host 127.0.0.1]`` runs
``python -m tvm.exec.rpc_server`` registered with the tracker (loopback by default).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from tvm_bsp.cli.args import (
    add_command,
    add_json_option,
    add_rpc_options,
    add_target_option,
    fail,
    rpc_usage_error,
    usage_error,
)

__all__ = [
    "add_rpc_server_parser",
    "add_tune_parser",
    "run_rpc_server",
    "run_tune",
]


_TUNE_HELP = "tune a model's kernels on the host or an RPC device (or search block sizes)"
_TUNE_DESCRIPTION = (
    "MODEL is a model file of `tvm-bsp train`/`prune` (OUT/model.pt, BSPC "
    "weights from OUT/bspc/): tune the knobs of every recurrent layer for streaming. Or a "
    "BSPC export directory (index.json): tune the BSPC kernel of every matrix. Every "
    "measurement is appended to the database directory (rerunning resumes); "
    "compile_model(..., tuned=DB) applies the best records. With --block-search, MODEL "
    "is a dense model whose block grids x rates are searched for PER and latency."
)


def add_tune_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tvm-bsp tune`` (handler in ``func``); return its parser."""
    p = add_command(subparsers, "tune", run_tune, _TUNE_HELP, _TUNE_DESCRIPTION, attr="func")
    p.add_argument(
        "bspc_dir", type=Path, metavar="MODEL", help="model.pt (or its dir), or a BSPC export dir"
    )
    p.add_argument(
        "--db",
        type=Path,
        default=None,
        help="tuning database directory (required; with --block-search: optional, "
        "its records are applied when timing)",
    )
    add_target_option(p)
    add_rpc_options(p)
    p.add_argument(
        "--trials", type=int, default=16, help="candidate configs per matrix or RNN layer"
    )
    p.add_argument("--batch", type=int, default=1, help="frames per call (default 1)")
    p.add_argument(
        "--epilogue", default=None, choices=["none", "sigmoid", "tanh"], help="activation"
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per measurement")
    p.add_argument("--seed", type=int, default=0, help="seed of the random candidates")
    p.add_argument(
        "--verbose", action="store_true", help="also TVM's log lines (one or more per candidate)"
    )
    add_json_option(p, "also write a summary as JSON (the records with --block-search)")
    g = p.add_argument_group("block-size search (--block-search)")
    g.add_argument(
        "--block-search", action="store_true", help="search block grids x rates (PER, latency)"
    )
    from tvm_bsp.cli.block_search import add_block_search_args

    add_block_search_args(g, standalone=False)  # type: ignore[arg-type]
    return p


def _usage(message: str) -> int:
    return usage_error("tune", message)


def run_tune(args: argparse.Namespace) -> int:
    """Handler of ``tvm-bsp tune``; returns the exit code (1 when the device dropped off)."""
    if getattr(args, "block_search", False):
        from tvm_bsp.cli.block_search import run_block_search

        return run_block_search(args, model=args.bspc_dir)
    if args.db is None:
        return _usage("--db DIR is required")
    rpc_problem = rpc_usage_error(args)
    if rpc_problem is not None:
        return _usage(rpc_problem)
    if args.trials < 1:
        return _usage("--trials must be positive")
    path: Path = args.bspc_dir
    if path.is_dir() and (path / "index.json").is_file():
        run = _tune_bspc_dir
    elif path.is_file() or (path.is_dir() and (path / "model.pt").is_file()):
        run = _tune_model_file
    else:
        return _usage(
            f"{path} is neither a model file (tvm-bsp train/prune) nor a BSPC export "
            "directory (index.json)"
        )
    _set_verbosity(getattr(args, "verbose", False))
    if args.tracker is not None:  # before loading or compiling anything
        from tvm_bsp.devices.tracker import TrackerError, check_tracker

        try:
            check_tracker(args.tracker[0], args.tracker[1], args.key)
        except TrackerError as err:
            return fail("tune", str(err))
    return run(args)


def _set_verbosity(verbose: bool) -> None:
    """MetaSchedule's loggers at INFO (and a handler) with ``--verbose``, else WARNING.

    :class:`tvm_bsp.tune.runner.Measurer` silences its worker processes' per-candidate lines
    unless the ``tvm.s_tir.meta_schedule`` logger is enabled for INFO.
    """
    import logging

    if verbose:
        logging.basicConfig(level=logging.INFO)
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(
        logging.INFO if verbose else logging.WARNING
    )


def _tuning_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords ``tune_model`` and ``tune_spmm`` share: where, how long, and the log."""
    return {
        "target": args.target,
        "trials": args.trials,
        "tracker": args.tracker,
        "key": args.key,
        "seed": args.seed,
        "session_timeout": args.timeout,
        "log": lambda m: print(m, flush=True),
    }


def _tune_model_file(args: argparse.Namespace) -> int:
    from tvm_bsp.tune.model_tuner import load_model_source, tune_model
    from tvm_bsp.tune.tuner import TuningError, summarize

    try:
        module, bspc = load_model_source(args.bspc_dir)
    except (FileNotFoundError, ValueError) as err:
        return _usage(str(err))
    print(f"== {args.bspc_dir} (BSPC: {bspc})", flush=True)
    summary: dict[str, Any] = {}
    status = 0
    try:
        results = tune_model(module, args.db, bspc=bspc, **_tuning_options(args))
        summary = {name: dict(summarize(res)) for name, res in results.items()}
    except TuningError as err:
        status = fail("tune", str(err))
        summary = {"error": str(err), "records_kept": err.records_kept}
    except ValueError as err:
        return _usage(str(err))
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1))
    return status


def _tune_bspc_dir(args: argparse.Namespace) -> int:
    from tvm_bsp.prune import load_bspc_dir
    from tvm_bsp.tune.runner import format_us
    from tvm_bsp.tune.tuner import TuningError, summarize, tune_spmm

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
                epilogue=args.epilogue,
                **_tuning_options(args),
            )
        except TuningError as err:
            status = fail("tune", str(err))
            summary[name] = {"error": str(err), "records_kept": err.records_kept}
            break
        summary[name] = dict(summarize(res))
        speed = f" ({res.speedup:.2f}x)" if res.speedup else ""
        print(
            f"   default {format_us(res.default_us)} -> best {format_us(res.best_us)}{speed}",
            flush=True,
        )
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1))
    return status


_RPC_SERVER_HELP = "run a TVM RPC server registered with a tracker under a device key"
_RPC_SERVER_DESCRIPTION = (
    "Wraps `python -m tvm.exec.rpc_server`; binds to loopback unless --host says otherwise."
)


def add_rpc_server_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tvm-bsp rpc-server`` (handler in ``func``); return its parser."""
    p = add_command(
        subparsers,
        "rpc-server",
        run_rpc_server,
        _RPC_SERVER_HELP,
        _RPC_SERVER_DESCRIPTION,
        attr="func",
    )
    add_rpc_options(p, required=True)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9090, help="first port to try (default 9090)")
    p.add_argument("--port-end", type=int, default=9199, help="last port to try")
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
    """Handler of ``tvm-bsp rpc-server``: run the server until it exits or is stopped.

    Ctrl-C, SIGTERM (``kill PID``) and SIGHUP stop the server and all its processes (exit 0);
    they also end when this process is killed (:mod:`tvm_bsp.devices.supervise`).
    """
    from tvm_bsp.devices.supervise import supervised_call

    host, port = args.tracker
    print(
        f"tvm-bsp rpc-server: serving key {args.key!r} on {args.host} (ports {args.port}-"
        f"{args.port_end}) for the tracker {host}:{port}; stop with Ctrl-C or kill {os.getpid()}",
        file=sys.stderr,
        flush=True,
    )
    return supervised_call(rpc_server_command(args))
