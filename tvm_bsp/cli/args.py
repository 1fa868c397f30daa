"""Option groups and argument converters shared by the ``tvm-bsp`` subcommands.

One place for the flags that several commands take, with one name, default, help text and
error message each:

=======================  ==============================================  ===================
group                    flags                                           used by
=======================  ==============================================  ===================
model                    ``MODEL`` (a model file, or a compiled .so)     compile, deploy
compile                  ``--target --bspc --db --threads``              compile, deploy
target                   ``--target``                                    compile, deploy, tune
threads                  ``--threads``                                   compile, deploy,
                                                                         train, prune, demo
corpus                   ``--corpus --sizes --corpus-seed``              train, prune
RPC                      ``--tracker HOST:PORT --key KEY``               tune, rpc-server
output                   ``--json PATH``, ``--no-progress``              demo, tune, train,
                                                                         prune
=======================  ==============================================  ===================

A bad value is a usage error: the converters raise :class:`argparse.ArgumentTypeError`, so
argparse prints ``tvm-bsp CMD: error: argument --FLAG: MESSAGE`` and exits with 2; checks that
need several flags (or a file) use :func:`usage_error`, which prints the same form and returns
2. Registering the options is cheap: the converters import TVM or torch only when they run.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tvm_bsp.bspc.grid import parse_grid

__all__ = [
    "DEFAULT_SIZES",
    "TARGET_HELP",
    "add_command",
    "add_compile_options",
    "add_corpus_options",
    "add_json_option",
    "add_model_options",
    "add_progress_option",
    "add_rpc_options",
    "add_target_option",
    "add_threads_option",
    "bspc_source",
    "corpus_sizes",
    "fail",
    "grid_arg",
    "non_negative_int",
    "paper_rate",
    "paper_rates",
    "positive_int",
    "rate_arg",
    "rpc_usage_error",
    "sizes_arg",
    "target_name",
    "tracker_address",
    "usage_error",
]

#: train, dev and test utterances of the synthetic corpus when ``--sizes`` is not given.
DEFAULT_SIZES = (4000, 400, 400)

#: Help text of ``--target`` (the names of :data:`tvm_bsp.deploy.targets.DEPLOY_TARGETS`).
TARGET_HELP = "host, arm64, android-arm64 (needs TVM_NDK_CC), opencl-mali, opencl-adreno"

_SIZES_TEXT = ",".join(map(str, DEFAULT_SIZES))
_MODEL_HELP = "model .pt (its .json config beside it), .onnx or .safetensors"


# --------------------------------------------------------------------------- exit codes
def fail(command: str, message: str, code: int = 1) -> int:
    """Print ``tvm-bsp COMMAND: error: MESSAGE`` on stderr; return ``code`` (the exit code).

    Parameters
    ----------
    command : str
        The subcommand (``compile``, ``tune``, ...).
    message : str
        What went wrong, one line.
    code : int
        1 for a failure (the default), 2 for bad usage (see :func:`usage_error`).

    Returns
    -------
    int
        ``code``.
    """
    print(f"tvm-bsp {command}: error: {message}", file=sys.stderr)
    return code


def usage_error(command: str, message: str) -> int:
    """:func:`fail` with exit code 2: a usage error found after parsing (flag combinations)."""
    return fail(command, message, 2)


# --------------------------------------------------------------------------- converters
def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type of an integer ``>= 1`` (threads, epochs, hidden units...)."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type of an integer ``>= 0``."""
    return _int_at_least(text, 0, "an integer >= 0")


def sizes_arg(text: str) -> tuple[int, ...]:
    """argparse type of ``--sizes``: comma-separated integers ``>= 0`` (:func:`corpus_sizes`)."""
    return tuple(non_negative_int(v) for v in text.split(","))


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None


def rate_arg(text: str) -> float:
    """argparse type of a compression rate: a finite number ``>= 1``."""
    value = _number(text, "rate")
    if not value >= 1 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"rate must be a finite number >= 1, got {text}")
    return value


def paper_rate(text: str) -> float:
    """argparse type of a rate with a known column/row split (``tvm_bsp.prune.PAPER_SPLITS``)."""
    from tvm_bsp.prune import PAPER_SPLITS

    value = _number(text, "rate")
    if value not in PAPER_SPLITS:
        raise argparse.ArgumentTypeError(
            f"no column/row split known for rate {text}; choose from {sorted(PAPER_SPLITS)}"
        )
    return value


def paper_rates(text: str) -> list[int]:
    """argparse type of comma-separated integer rates, each one of :func:`paper_rate`'s."""
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


def grid_arg(text: str) -> tuple[int, int]:
    """argparse type of a ``ROWSxCOLS`` block grid (:func:`tvm_bsp.bspc.grid.parse_grid`)."""
    try:
        return parse_grid(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def target_name(text: str) -> str:
    """``--target`` value: a named target (bad ones are usage errors listing the valid names)."""
    from tvm_bsp.deploy.targets import DEPLOY_TARGETS

    if text not in DEPLOY_TARGETS:
        raise argparse.ArgumentTypeError(
            f"unknown target {text!r}; choose from {', '.join(DEPLOY_TARGETS)}"
        )
    return text


def tracker_address(text: str) -> tuple[str, int]:
    """argparse type of ``--tracker HOST:PORT``; returns ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


# --------------------------------------------------------------------------- groups
def add_command(
    subparsers: Any,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    help: str,
    description: str,
    *,
    attr: str = "handler",
) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` with its handler (``args.<attr>``); return its parser.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The object ``add_subparsers()`` returned.
    name : str
        The subcommand.
    handler : callable
        ``handler(args) -> exit code``, stored in the parsed namespace under ``attr``.
    help, description : str
        The line in ``tvm-bsp --help`` and the paragraph of ``tvm-bsp NAME --help``.
    attr : str
        ``"handler"`` (the default) or ``"func"``: :func:`tvm_bsp.cli.main` calls either.

    Returns
    -------
    argparse.ArgumentParser
    """
    p = subparsers.add_parser(name, help=help, description=description)
    p.set_defaults(**{attr: handler})
    return p


def add_model_options(parser: argparse.ArgumentParser, *, compiled: bool = False) -> None:
    """Add the positional ``model``: a file :func:`tvm_bsp.compiler.model_file.load_model_file`
    opens (``compiled``: or a ``.so`` that ``tvm-bsp compile`` wrote)."""
    text = _MODEL_HELP + (", or a compiled .so" if compiled else "")
    parser.add_argument("model", type=Path, help=text)


def add_target_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--target NAME`` (:func:`target_name`; default ``host``)."""
    parser.add_argument(
        "--target", type=target_name, default="host", help=f"{TARGET_HELP} (default host)"
    )


def add_threads_option(
    parser: argparse.ArgumentParser, what: str, default: int | None, note: str = ""
) -> None:
    """Add ``--threads N`` (:func:`positive_int`).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    what : str
        Whose threads, first word of the help: ``"torch"``, ``"kernel"``.
    default : int or None
        The default (None: the callee decides; no default in the help).
    note : str
        Appended to ``(default N`` in the help, e.g. ``": why"``.
    """
    text = f"{what} threads" + ("" if default is None else f" (default {default}{note})")
    parser.add_argument("--threads", type=positive_int, default=default, help=text)


def add_compile_options(parser: argparse.ArgumentParser) -> None:
    """Add what ``compile_model`` takes from the command line: ``--target``, ``--bspc``
    (resolved by :func:`bspc_source`), ``--db`` and ``--threads`` (kernel threads)."""
    add_target_option(parser)
    parser.add_argument(
        "--bspc",
        default="auto",
        help="'auto' (default): the BSPC export next to the model (DIR/bspc of 'tvm-bsp "
        "prune') if present, else weights that are mostly zeros; 'none': all dense; or a "
        "directory of BSPC .npz files",
    )
    parser.add_argument(
        "--db", type=Path, default=None, help="tuning database directory (tvm-bsp tune)"
    )
    add_threads_option(parser, "kernel", None)


def bspc_source(value: str, model_path: Path) -> str | None:
    """The ``bspc`` argument of ``compile_model`` for ``--bspc VALUE`` and the model file.

    Returns
    -------
    str or None
        None for ``none``; for ``auto`` the directory ``bspc`` beside the model if there is
        one, else ``"auto"``; else the directory given.

    Raises
    ------
    FileNotFoundError
        If ``value`` names a directory that does not exist.
    """
    if value == "none":
        return None
    if value == "auto":
        beside = model_path.parent / "bspc"
        return str(beside) if beside.is_dir() else "auto"
    path = Path(value)
    if not path.is_dir():
        raise FileNotFoundError(f"--bspc {value}: no such directory (or use 'auto' / 'none')")
    return str(path)


def add_corpus_options(parser: argparse.ArgumentParser, default_note: str) -> None:
    """Add ``--corpus DIR``, ``--sizes TRAIN,DEV,TEST`` and ``--corpus-seed N`` (all default
    None; ``default_note`` says in the help what None means for this command)."""
    parser.add_argument(
        "--corpus", type=Path, default=None, help=f"corpus directory ({default_note})"
    )
    parser.add_argument(
        "--sizes",
        type=sizes_arg,
        default=None,
        help=f"train,dev,test utterances to generate (default {_SIZES_TEXT})",
    )
    parser.add_argument(
        "--corpus-seed", type=int, default=None, help=f"corpus seed ({default_note}; else 0)"
    )


def corpus_sizes(
    args: argparse.Namespace, fallback: tuple[int, ...] = DEFAULT_SIZES
) -> tuple[int, int, int]:
    """``args.sizes`` (or ``fallback``) as ``(train, dev, test)``.

    Raises
    ------
    ValueError
        If there are not three numbers (a usage error: exit 2).
    """
    sizes = args.sizes if args.sizes is not None else fallback
    if len(sizes) != 3:
        raise ValueError(f"--sizes needs three numbers train,dev,test, got {sizes}")
    train, dev, test = (int(s) for s in sizes)
    return train, dev, test


def add_rpc_options(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """Add ``--tracker HOST:PORT`` (:func:`tracker_address`) and ``--key KEY``.

    ``required``: both must be given (``rpc-server``); else both default to None and
    :func:`rpc_usage_error` checks that they come together.
    """
    parser.add_argument(
        "--tracker",
        type=tracker_address,
        required=required,
        default=None,
        help="RPC tracker HOST:PORT",
    )
    parser.add_argument(
        "--key", required=required, default=None, help="device key registered with the tracker"
    )


def rpc_usage_error(args: argparse.Namespace) -> str | None:
    """The usage error of optional RPC options (:func:`add_rpc_options`), or None."""
    if (args.tracker is None) != (args.key is None):
        return "--tracker and --key go together"
    return None


def add_json_option(parser: argparse.ArgumentParser, help: str) -> None:
    """Add ``--json PATH`` (default None) with the command's ``help``."""
    parser.add_argument("--json", type=Path, default=None, help=help)


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-progress`` (``args.no_progress``: no progress bars)."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
