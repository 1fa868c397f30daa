#!/usr/bin/env python
"""Reproduce RTMobile's Table I (GRU PER vs BSP compression) on the synthetic speech corpus.

Generates (or reuses) the corpus, trains a dense GRU acoustic model, prunes it with ADMM to
each rate with BSP (RTMobile's column/row splits), ESE-balanced and magnitude pruning, retrains
with fixed masks and scores PER on the test (held-out voices and words), dev and real splits.
Everything is checkpointed under ``--work``: a rerun skips finished rows and resumes the
half-done one. After dense training the chains of the three methods run in ``--jobs``
processes (default: one per method).

``--json PATH`` writes the contract: a JSON list of records ``{"rate", "method", "per",
"per_dense", "achieved_rate", "split"}`` (PER in percent). The full document (every record's
details, the dense model's history, the settings, the wall time) goes beside it to
``PATH`` with the suffix ``.details.json``; ``--markdown`` and ``--plot`` render from it.

Examples
--------
    python scripts/table1.py --json results/table1.json --plot results/table1.png \\
        --markdown results/table1.md
    python scripts/table1.py --quick --work .cache/table1-quick --json /tmp/t1.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tvm_bsp.cli.speech import grid_arg
from tvm_bsp.experiments.table1.report import contract_records, markdown_table, plot
from tvm_bsp.experiments.table1.run import (
    SPLITS,
    ExperimentConfig,
    quick_config,
    run_experiment,
    with_overrides,
)
from tvm_bsp.speech.prune_run import METHODS
from tvm_bsp.speech.storage import atomic_write_text


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"rates must be numbers, got {text!r}") from None
    return int(value) if value.is_integer() else value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=".cache/table1", help="work directory (checkpoints)")
    p.add_argument("--corpus", default=None, help="corpus directory (default: inside --work)")
    p.add_argument("--quick", action="store_true", help="tiny corpus and model, two rates")
    p.add_argument("--json", dest="json_path", default=None, help="write the records here")
    p.add_argument("--plot", default=None, help="write the PER-vs-rate plot here (.png)")
    p.add_argument("--markdown", default=None, help="write the Markdown table here")
    p.add_argument("--rates", default=None, help="comma-separated rates (default 10,...,103)")
    p.add_argument("--methods", default=None, help="comma-separated: bsp,magnitude,balanced")
    p.add_argument("--splits", default=None, help="comma-separated: test,dev,real")
    p.add_argument("--grid", type=grid_arg, default=None, help="BSP grid RBxCB of H-wide matrices")
    p.add_argument("--hidden", type=int, default=None, help="GRU hidden size")
    p.add_argument("--epochs", type=int, default=None, help="dense training epochs")
    p.add_argument("--admm-epochs", type=int, default=None, help="ADMM units per row")
    p.add_argument("--retrain-epochs", type=int, default=None, help="retraining units per row")
    p.add_argument(
        "--first-retrain-epochs",
        type=int,
        default=None,
        help="retraining units of each chain's first row (0: --retrain-epochs)",
    )
    p.add_argument("--utts-per-epoch", type=int, default=None, help="utterances per unit")
    p.add_argument(
        "--gradual",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="chain the rates (each row starts from the previous rate's model)",
    )
    p.add_argument(
        "--distill", type=float, default=None, help="distillation weight in [0, 1] (0: off)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument(
        "--jobs",
        type=int,
        default=len(METHODS),
        help="processes for the method chains after dense training, one torch thread each "
        f"(default {len(METHODS)}: one per method; on 2 cores three chains of equal length "
        "finish sooner shared than two at a time)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--report-only", action="store_true", help="train nothing; report the finished rows"
    )
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="train the dense model even where the shipped one fits these settings",
    )
    p.add_argument(
        "--resume-from",
        type=Path,
        default=None,
        help="dense-training checkpoint (.safetensors) to continue from (a long run's commit)",
    )
    p.add_argument(
        "--rows-from",
        type=Path,
        default=None,
        help="install the finished rows saved here by --save-rows (a long run's commit) first",
    )
    p.add_argument(
        "--save-rows",
        type=Path,
        default=None,
        help="after the run (or --report-only), write its finished rows here as committable files",
    )
    p.add_argument(
        "--ship",
        type=Path,
        default=None,
        help="after the run, write the dense model and the BSP rows as pretrained files here",
    )
    p.add_argument(
        "--dense-only",
        action="store_true",
        help="train (or resume) the dense model only, print its PER and stop",
    )
    return p


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The experiment settings the arguments select."""
    config = quick_config() if args.quick else ExperimentConfig()
    changes: dict = {}
    if args.rates:
        changes["rates"] = tuple(_number(r) for r in args.rates.split(",") if r.strip())
    if args.methods:
        changes["methods"] = tuple(m.strip() for m in args.methods.split(","))
    if args.splits:
        changes["splits"] = tuple(s.strip() for s in args.splits.split(","))
    if args.grid:
        changes["prune_row_blocks"], changes["prune_col_blocks"] = args.grid
    if args.hidden:
        changes["model_hidden"] = args.hidden
    if args.epochs is not None:
        changes["dense_epochs"] = args.epochs
    for name in ("admm_epochs", "retrain_epochs", "first_retrain_epochs", "utts_per_epoch"):
        value = getattr(args, name)
        if value is not None:
            if value < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
            changes[f"prune_{name}"] = value
    if args.gradual is not None:
        changes["gradual"] = args.gradual
    if args.distill is not None:
        if not 0 <= args.distill <= 1:
            raise ValueError(f"--distill must be in [0, 1], got {args.distill}")
        changes["prune_distill_weight"] = args.distill
    config = with_overrides(config, **changes)
    bad = [m for m in config.methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
    bad = [s for s in config.splits if s not in SPLITS]
    if bad:
        raise ValueError(f"unknown split(s) {bad}; choose from {', '.join(SPLITS)}")
    bad = [r for r in config.rates if not 1 <= r < float("inf")]
    if bad or not config.rates:
        raise ValueError(f"rates must be numbers >= 1, got {list(config.rates)}")
    return config


def shipped_dense_for(config) -> Path | None:
    """The shipped dense model when it was trained with ``config``'s settings, else None."""
    from tvm_bsp.experiments.table1.config import dense_settings_differ
    from tvm_bsp.experiments.table1.ship import shipped_dir
    from tvm_bsp.speech.pretrained import read_meta

    path = shipped_dir() / "dense.safetensors"
    if not path.exists():
        return None
    if dense_settings_differ(config, read_meta(path)["info"].get("settings")):
        print(
            f"note: {path} was trained with other settings: training a dense model", file=sys.stderr
        )
        return None
    return path


def command_line(args: argparse.Namespace) -> str:
    """This invocation as a shell command."""
    import shlex

    return "python scripts/table1.py " + shlex.join(args.argv)


def ship(args: argparse.Namespace, config) -> None:
    """Write the run's dense model and BSP rows as pretrained files (``--ship``)."""
    from tvm_bsp.experiments.table1.ship import ship_run
    from tvm_bsp.speech.corpus import load_split

    corpus = (
        Path(args.corpus)
        if args.corpus
        else Path(args.work)
        / (f"corpus-{config.n_train}-{config.n_dev}-{config.n_test}-s{config.corpus_seed}")
    )
    files = ship_run(
        args.work, args.ship, command=command_line(args), test_utts=load_split(corpus, "test")
    )
    for path in files:
        print(f"shipped {path} ({path.stat().st_size / 1e6:.2f} MB)")


def details_path(json_path: str | Path) -> Path:
    """The sidecar of ``--json PATH`` (``table1.json`` -> ``table1.details.json``)."""
    path = Path(json_path)
    return path.with_name(path.stem + ".details.json")


def main(argv: list[str] | None = None) -> int:
    """Run the experiment and write the requested outputs; return the exit code."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    try:
        config = config_from_args(args)
    except (TypeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"error: --jobs must be >= 1, got {args.jobs}", file=sys.stderr)
        return 2
    if args.dense_only:
        config = with_overrides(config, methods=())
    dense_from = None if args.from_scratch else shipped_dense_for(config)
    if not args.report_only:  # the provenance that --ship records
        Path(args.work).mkdir(parents=True, exist_ok=True)
        with open(Path(args.work) / "commands.txt", "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {command_line(args)}\n")
    t0 = time.time()
    try:
        summary = run_experiment(
            args.work,
            config,
            corpus_dir=args.corpus,
            progress=not args.no_progress,
            report_only=args.report_only,
            jobs=args.jobs,
            dense_from=dense_from,
            resume_from=args.resume_from,
            rows_from=args.rows_from,
        )
        for name in summary.carried_rows:
            print(f"carried row {name} from {args.rows_from}")
        if args.save_rows is not None:
            from tvm_bsp.experiments.table1.carry import save_rows

            for path in save_rows(args.work, args.save_rows):
                print(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB)")
        if args.ship is not None:
            ship(args, config)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    doc = summary.to_json(config)
    doc["wall_s"] = time.time() - t0
    if args.dense_only:
        dense = summary.dense
        per = ", ".join(f"{k} {v:.2f}%" for k, v in dense["per"].items())
        print(f"dense model: PER {per}; trained {dense['train_wall_s']:.0f} s")
        return 0
    for path in (args.json_path, args.plot, args.markdown):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    if args.json_path:
        path = Path(args.json_path)
        atomic_write_text(path, json.dumps(contract_records(doc["records"]), indent=2) + "\n")
        atomic_write_text(details_path(path), json.dumps(doc, indent=2) + "\n")
    if args.markdown:
        atomic_write_text(Path(args.markdown), markdown_table(doc))
    if args.plot:
        plot(doc, args.plot)
    print(markdown_table(doc))
    print(f"wall time {doc['wall_s']:.0f} s; trained {summary.trained_epochs} epochs/units")
    return 0


if __name__ == "__main__":
    sys.exit(main())
