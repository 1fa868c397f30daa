"""Command line of the block-size search (``scripts/block_search.py``, ``tvm-bsp tune
--block-search``): find the model and its corpus, run
:func:`tvm_bsp.experiments.block_search.block_search`, print the table, write the JSON records and
the plot."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tvm_bsp.experiments.block_search import (
    SearchSettings,
    block_search,
    format_table,
    parse_grids,
    plot_records,
)

__all__ = ["add_block_search_args", "main", "run_block_search"]

#: Dense models tried in order when none is given (Table I runs write them).
DEFAULT_MODELS = (".cache/table1/dense/model.pt", ".cache/table1-quick/dense/model.pt")
QUICK = {"grids": "6x4,12x8", "rates": "8", "admm": 1, "retrain": 1, "utts": 60, "dev": 30}
FULL = {"grids": "6x4,12x8,24x16,48x16", "rates": "10,20", "admm": 1, "retrain": 3, "utts": 200}


def add_block_search_args(p: argparse.ArgumentParser, *, standalone: bool) -> None:
    """Add the search's options to ``p`` (``standalone``: also ``--json`` and ``--model``)."""
    if standalone:
        p.add_argument("--model", type=Path, default=None, help="dense model.pt (tvm-bsp train)")
        p.add_argument("--json", type=Path, required=True, help="write the records here")
        p.add_argument("--db", type=Path, default=None, help="tuning database for latency")
        p.add_argument("--target", default="host", help="target (must run here; default host)")
    p.add_argument("--plot", type=Path, default=None, help="write the PER/latency plot here")
    p.add_argument("--grids", default=None, help="ROWSxCOLS list, e.g. 6x4,12x8")
    p.add_argument("--rates", default=None, help="compression rates, e.g. 10,20")
    p.add_argument("--work", type=Path, default=None, help="cache dir (default .cache/blocks)")
    p.add_argument("--corpus", type=Path, default=None, help="corpus dir (train/dev splits)")
    p.add_argument("--quick", action="store_true", help="two grids, one rate, short runs")
    p.add_argument("--dev-utts", type=int, default=None, help="dev utterances for PER")


def _rates(text: str) -> list[float]:
    try:
        rates = [float(t) for t in text.split(",")]
    except ValueError:
        raise ValueError(f"rates {text!r} are not comma-separated numbers") from None
    if any(r <= 1.0 for r in rates):
        raise ValueError(f"rates must be > 1, got {text!r}")
    return rates


def _find_model(model: Path | None) -> Path:
    if model is not None:
        return model
    for candidate in DEFAULT_MODELS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError(
        "no dense model given and none of " + ", ".join(DEFAULT_MODELS) + " exists: train one "
        "with `tvm-bsp train` (or `python scripts/table1.py --quick`) and pass it"
    )


def _find_corpus(model_path: Path, extra: dict[str, Any], corpus: Path | None) -> Path:
    if corpus is not None:
        return corpus
    if extra.get("corpus"):
        return Path(extra["corpus"])
    siblings = sorted(model_path.absolute().parent.parent.glob("corpus-*"))
    if len(siblings) == 1:
        return siblings[0]
    raise FileNotFoundError(
        f"cannot tell which corpus {model_path} was trained on: pass --corpus DIR"
    )


def run_block_search(args: argparse.Namespace, model: Path | None = None) -> int:
    """Run the search for parsed arguments; returns the exit code."""
    from tvm_bsp.speech.corpus import load_split
    from tvm_bsp.speech.model import load_model

    preset = QUICK if args.quick else FULL
    try:
        grids = parse_grids(args.grids or preset["grids"])
        rates = _rates(args.rates or preset["rates"])
        path = _find_model(model if model is not None else getattr(args, "model", None))
        dense, extra = load_model(path)
        corpus = _find_corpus(path, extra, args.corpus)
        train, dev = load_split(corpus, "train"), load_split(corpus, "dev")
    except (FileNotFoundError, ValueError) as err:
        print(f"block search: error: {err}", file=sys.stderr)
        return 2
    dev_utts = args.dev_utts or preset.get("dev")
    if dev_utts:
        dev = dev[:dev_utts]
    settings = SearchSettings(
        admm_epochs=int(preset["admm"]),
        retrain_epochs=int(preset["retrain"]),
        utts_per_epoch=int(preset["utts"]),
        decode=extra.get("decode"),
    )
    work = args.work or Path(".cache/blocks") / ("quick" if args.quick else "full")
    print(
        f"block search: {path} ({len(train)} train / {len(dev)} dev utterances from {corpus}), "
        f"grids {grids}, rates {rates}, work dir {work}",
        flush=True,
    )
    records = block_search(
        dense, train, dev, grids, rates, work, settings=settings,
        target=args.target, db=args.db, log=lambda m: print(m, flush=True),
    )  # fmt: skip
    print(format_table(records))
    if args.json is not None:
        from tvm_bsp.bspc import atomic_write

        args.json.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(records, indent=1).encode()
        atomic_write(args.json, lambda f: f.write(text))
        print(f"records in {args.json}")
    if args.plot is not None:
        print(f"plot in {plot_records(records, args.plot)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``scripts/block_search.py``."""
    p = argparse.ArgumentParser(
        prog="block_search.py",
        description="BSP block-size search: PER (short masked fine-tune) and streaming latency "
        "of block grids x rates for a trained dense model; marks the Pareto front.",
    )
    add_block_search_args(p, standalone=True)
    return run_block_search(p.parse_args(argv))
