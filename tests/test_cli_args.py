"""The shared option groups of the ``tvm-bsp`` subcommands (:mod:`tvm_bsp.cli.args`).

Each group adds its flags with the defaults its help text states; every subcommand that takes a
group's flag takes the same flag (type, default, help) and rejects a bad value with the same
message and exit code 2.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from tvm_bsp.cli import args as cli_args
from tvm_bsp.cli import build_parser, main


def _parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="t")


def _action(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    matches = [a for a in parser._actions if flag in a.option_strings or a.dest == flag]
    assert len(matches) == 1, flag
    return matches[0]


def _subcommand(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


# --------------------------------------------------------------------------- groups: defaults
def test_compile_options_defaults_match_their_help() -> None:
    p = _parser()
    cli_args.add_compile_options(p)
    args = p.parse_args([])
    assert (args.target, args.bspc, args.db, args.threads) == ("host", "auto", None, None)
    assert _action(p, "--target").help.endswith("(default host)")
    assert _action(p, "--bspc").help.startswith("'auto' (default)")
    for name in ("host", "arm64", "android-arm64", "opencl-mali", "opencl-adreno"):
        assert name in _action(p, "--target").help
    args = p.parse_args(["--target", "arm64", "--bspc", "none", "--db", "d", "--threads", "3"])
    assert (args.target, args.bspc, args.db, args.threads) == ("arm64", "none", Path("d"), 3)


def test_model_options_take_a_path() -> None:
    plain, compiled = _parser(), _parser()
    cli_args.add_model_options(plain)
    cli_args.add_model_options(compiled, compiled=True)
    assert plain.parse_args(["a/m.onnx"]).model == Path("a/m.onnx")
    assert ".onnx" in _action(plain, "model").help and ".json" in _action(plain, "model").help
    assert ".so" not in _action(plain, "model").help
    assert _action(compiled, "model").help.endswith("or a compiled .so")


def test_corpus_options_defaults_match_their_help() -> None:
    p = _parser()
    cli_args.add_corpus_options(p, "default: X")
    args = p.parse_args([])
    assert (args.corpus, args.sizes, args.corpus_seed) == (None, None, None)
    stated = re.search(r"\(default ([\d,]+)\)", _action(p, "--sizes").help).group(1)
    assert tuple(int(v) for v in stated.split(",")) == cli_args.DEFAULT_SIZES == (4000, 400, 400)
    assert _action(p, "--corpus").help == "corpus directory (default: X)"
    assert _action(p, "--corpus-seed").help == "corpus seed (default: X; else 0)"
    args = p.parse_args(["--corpus", "c", "--sizes", "40,0,10", "--corpus-seed", "3"])
    assert (args.corpus, args.sizes, args.corpus_seed) == (Path("c"), (40, 0, 10), 3)


@pytest.mark.parametrize(
    ("what", "default", "note", "help_text"),
    [
        ("torch", 1, "", "torch threads (default 1)"),
        ("torch", 1, ": why", "torch threads (default 1: why)"),
        ("kernel", None, "", "kernel threads"),
    ],
)
def test_threads_option(what: str, default: int | None, note: str, help_text: str) -> None:
    p = _parser()
    cli_args.add_threads_option(p, what, default, note)
    assert p.parse_args([]).threads == default
    assert p.parse_args(["--threads", "4"]).threads == 4
    assert _action(p, "--threads").help == help_text


def test_rpc_options_optional_and_required() -> None:
    p = _parser()
    cli_args.add_rpc_options(p)
    args = p.parse_args([])
    assert (args.tracker, args.key) == (None, None)
    args = p.parse_args(["--tracker", "10.0.0.2:9190", "--key", "rk3399"])
    assert (args.tracker, args.key) == (("10.0.0.2", 9190), "rk3399")

    required = argparse.ArgumentParser(prog="t")
    cli_args.add_rpc_options(required, required=True)
    with pytest.raises(SystemExit) as info:
        required.parse_args(["--key", "k"])
    assert info.value.code == 2


def test_rpc_usage_error_wants_tracker_and_key_together() -> None:
    def ns(tracker, key):
        return argparse.Namespace(tracker=tracker, key=key)

    assert cli_args.rpc_usage_error(ns(None, None)) is None
    assert cli_args.rpc_usage_error(ns(("h", 1), "k")) is None
    assert cli_args.rpc_usage_error(ns(None, "k")) == "--tracker and --key go together"
    assert cli_args.rpc_usage_error(ns(("h", 1), None)) == "--tracker and --key go together"


def test_output_options() -> None:
    p = _parser()
    cli_args.add_json_option(p, "write it")
    cli_args.add_progress_option(p)
    args = p.parse_args([])
    assert (args.json, args.no_progress) == (None, False)
    args = p.parse_args(["--json", "r.json", "--no-progress"])
    assert (args.json, args.no_progress) == (Path("r.json"), True)
    assert _action(p, "--json").help == "write it"


def test_add_command_stores_the_handler() -> None:
    def handler(args: argparse.Namespace) -> int:
        return 7

    top = argparse.ArgumentParser(prog="t")
    sub = top.add_subparsers(dest="command", required=True)
    cli_args.add_command(sub, "a", handler, "the a command", "Does a.")
    cli_args.add_command(sub, "b", handler, "the b command", "Does b.", attr="func")
    assert top.parse_args(["a"]).handler is handler
    assert top.parse_args(["b"]).func is handler
    assert not hasattr(top.parse_args(["b"]), "handler")
    assert sub.choices["a"].description == "Does a."


# --------------------------------------------------------------------------- converters
@pytest.mark.parametrize(
    ("convert", "text", "message"),
    [
        (cli_args.positive_int, "0", "expected a positive integer, got 0"),
        (cli_args.positive_int, "-3", "expected a positive integer, got -3"),
        (cli_args.positive_int, "1.5", "expected a positive integer, got '1.5'"),
        (cli_args.non_negative_int, "-1", "expected an integer >= 0, got -1"),
        (cli_args.non_negative_int, "x", "expected an integer >= 0, got 'x'"),
        (cli_args.sizes_arg, "4,-1,2", "expected an integer >= 0, got -1"),
        (cli_args.rate_arg, "0.5", "rate must be a finite number >= 1, got 0.5"),
        (cli_args.rate_arg, "inf", "rate must be a finite number >= 1, got inf"),
        (cli_args.rate_arg, "nan", "rate must be a finite number >= 1, got nan"),
        (cli_args.rate_arg, "ten", "rate must be a number, got 'ten'"),
        (cli_args.paper_rate, "ten", "rate must be a number, got 'ten'"),
        (cli_args.paper_rates, "10,x", "rates must be integers, got '10,x'"),
        (cli_args.tracker_address, "host", "expected HOST:PORT, got 'host'"),
        (cli_args.tracker_address, ":9190", "expected HOST:PORT, got ':9190'"),
        (cli_args.tracker_address, "h:p", "expected HOST:PORT, got 'h:p'"),
        (cli_args.target_name, "sparc", "unknown target 'sparc'; choose from host, arm64, "
         "android-arm64, opencl-mali, opencl-adreno"),
    ],
)  # fmt: skip
def test_converters_reject_bad_values(convert, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        convert(text)
    assert str(info.value) == message


def test_converters_accept_good_values() -> None:
    from tvm_bsp.prune import PAPER_SPLITS

    assert cli_args.positive_int("12") == 12
    assert cli_args.non_negative_int("0") == 0
    assert cli_args.sizes_arg("40,10,10") == (40, 10, 10)
    assert cli_args.rate_arg("19") == 19.0 and cli_args.rate_arg("1") == 1.0
    assert cli_args.grid_arg("6x4") == (6, 4)
    assert cli_args.tracker_address("10.0.0.2:9190") == ("10.0.0.2", 9190)
    assert cli_args.target_name("opencl-mali") == "opencl-mali"
    known = sorted(PAPER_SPLITS)
    assert cli_args.paper_rate(str(known[-1])) == known[-1]
    assert cli_args.paper_rates(f"{known[1]},{known[2]},") == known[1:3]
    unknown = max(known) + 1
    with pytest.raises(argparse.ArgumentTypeError, match=rf"rates \[{unknown}\]; choose from"):
        cli_args.paper_rates(f"{known[1]},{unknown}")
    with pytest.raises(argparse.ArgumentTypeError, match="not ROWSxCOLS"):
        cli_args.grid_arg("6")


def test_corpus_sizes_needs_three_numbers() -> None:
    ns = argparse.Namespace
    assert cli_args.corpus_sizes(ns(sizes=None)) == (4000, 400, 400)
    assert cli_args.corpus_sizes(ns(sizes=None), (40, 10, 10)) == (40, 10, 10)
    assert cli_args.corpus_sizes(ns(sizes=(5, 6, 7)), (40, 10, 10)) == (5, 6, 7)
    with pytest.raises(ValueError, match=r"needs three numbers train,dev,test, got \(5, 6\)"):
        cli_args.corpus_sizes(ns(sizes=(5, 6)))


def test_bspc_source(tmp_path: Path) -> None:
    model = tmp_path / "m" / "model.pt"
    model.parent.mkdir()
    assert cli_args.bspc_source("none", model) is None
    assert cli_args.bspc_source("auto", model) == "auto"  # no bspc/ beside the model
    (model.parent / "bspc").mkdir()
    assert cli_args.bspc_source("auto", model) == str(model.parent / "bspc")
    assert cli_args.bspc_source(str(tmp_path), model) == str(tmp_path)
    with pytest.raises(FileNotFoundError, match="--bspc nowhere: no such directory"):
        cli_args.bspc_source("nowhere", model)


def test_fail_and_usage_error_print_one_line(capsys) -> None:
    assert cli_args.fail("compile", "it broke") == 1
    assert cli_args.usage_error("tune", "--db DIR is required") == 2
    assert capsys.readouterr().err == (
        "tvm-bsp compile: error: it broke\ntvm-bsp tune: error: --db DIR is required\n"
    )


# --------------------------------------------------------------------------- the subcommands
SHARED = {  # flag -> the subcommands that take it from one group (--corpus: help per command)
    "--target": ("compile", "deploy", "tune"),
    "--bspc": ("compile", "deploy"),
    "--threads": ("compile", "deploy"),
    "--sizes": ("train", "prune"),
    "--no-progress": ("train", "prune", "demo"),
    "--tracker": ("tune", "rpc-server"),
    "--key": ("tune", "rpc-server"),
}


@pytest.mark.parametrize("flag", sorted(SHARED))
def test_subcommands_sharing_a_flag_take_the_same_flag(flag: str) -> None:
    actions = [_action(_subcommand(c), flag) for c in SHARED[flag]]
    first = actions[0]
    for other in actions[1:]:
        assert (other.type, other.default, other.help) == (first.type, first.default, first.help)


def test_torch_threads_are_positive_everywhere() -> None:
    actions = {c: _action(_subcommand(c), "--threads") for c in ("train", "prune", "demo")}
    assert all(a.type is cli_args.positive_int and a.default == 1 for a in actions.values())
    assert actions["train"].help == actions["prune"].help == "torch threads (default 1)"
    assert actions["demo"].help.startswith("torch threads (default 1: ")


BAD = [  # (flag, bad value, the message every subcommand prints, subcommands with their rest)
    ("--target", "sparc", "unknown target 'sparc'; choose from host, arm64, android-arm64, "
     "opencl-mali, opencl-adreno",
     {"compile": ["m.pt", "-o", "m.so"], "deploy": ["m.pt", "--out", "d"], "tune": ["m"]}),
    ("--threads", "0", "expected a positive integer, got 0",
     {"compile": ["m.pt", "-o", "m.so"], "deploy": ["m.pt", "--out", "d"],
      "train": ["--out", "m.pt"], "prune": ["m.pt", "--rate", "10", "--out", "d"], "demo": []}),
    ("--threads", "two", "expected a positive integer, got 'two'",
     {"compile": ["m.pt", "-o", "m.so"], "train": ["--out", "m.pt"], "demo": []}),
    ("--sizes", "40,-1,10", "expected an integer >= 0, got -1",
     {"train": ["--out", "m.pt"], "prune": ["m.pt", "--rate", "10", "--out", "d"]}),
    ("--tracker", "nohost", "expected HOST:PORT, got 'nohost'",
     {"tune": ["m"], "rpc-server": ["--key", "k"]}),
]  # fmt: skip


@pytest.mark.parametrize(("flag", "value", "message", "commands"), BAD, ids=lambda v: str(v)[:20])
def test_a_bad_value_is_the_same_usage_error_everywhere(flag, value, message, commands, capsys):
    for command, rest in commands.items():
        with pytest.raises(SystemExit) as info:
            main([command, *rest, flag, value])
        assert info.value.code == 2, command
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last == f"tvm-bsp {command}: error: argument {flag}: {message}", command
