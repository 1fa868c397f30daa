"""``tvm-bsp train`` and ``tvm-bsp prune``: the speech model commands.

``tvm-bsp train --out model.pt``
    Generate (or reuse) the synthetic corpus, train a dense GRU acoustic model (resumable:
    ``model.pt.ckpt`` is checkpointed every epoch), save it as a torch state dict plus
    ``model.json`` (loaded with ``weights_only=True``), print its PER.
``tvm-bsp prune model.pt --rate 19 --method bsp --out DIR``
    ADMM-prune and retrain the GRU matrices of a saved model (resumable from ``DIR/admm``),
    save ``DIR/model.pt``, export BSPC files to ``DIR/bspc`` (BSP only: the other methods'
    masks are not block-structured), write ``DIR/result.json``, print PER and achieved rate.
    ``--distill 0.7`` adds knowledge distillation from ``--teacher`` (default: the input
    model); gradual pruning is ``tvm-bsp prune bsp10/model.pt --rate 19 --teacher model.pt``.

Exit codes: 0 success, 1 a failure (message on stderr), 2 bad usage. Heavy imports (torch)
happen inside the handlers, so registering the parsers is cheap.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
import warnings
from pathlib import Path
from typing import Any

from tvm_bsp.cli.args import (
    DEFAULT_SIZES,
    add_command,
    add_corpus_options,
    add_progress_option,
    add_threads_option,
    corpus_sizes,
    fail,
    grid_arg,
    non_negative_int,
    positive_int,
    rate_arg,
)

__all__ = ["add_prune_parser", "add_train_parser", "grid_arg", "run_prune", "run_train"]


def _add_data_options(p: argparse.ArgumentParser, default_note: str) -> None:
    """The corpus, torch threads and progress options of ``train`` and ``prune``."""
    add_corpus_options(p, default_note)
    add_threads_option(p, "torch", 1)
    add_progress_option(p)


_TRAIN_HELP = "train a dense GRU acoustic model on the synthetic corpus"
_TRAIN_DESCRIPTION = (
    "Generate (or reuse) the synthetic corpus, train a dense acoustic model "
    "(resumable), save it (state dict + JSON config) and print its PER."
)


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tvm-bsp train`` on an ``add_subparsers()`` object; return its parser."""
    p = add_command(subparsers, "train", run_train, _TRAIN_HELP, _TRAIN_DESCRIPTION)
    p.add_argument("--out", type=Path, required=True, help="model file to write (.pt)")
    _add_data_options(p, "default .cache/corpus-<sizes>-s<seed>")
    p.add_argument("--cell", choices=("gru", "lstm", "kaldi_gru"), default="gru")
    p.add_argument("--hidden", type=positive_int, default=256, help="hidden units (default 256)")
    p.add_argument("--layers", type=positive_int, default=2, help="recurrent layers (default 2)")
    p.add_argument("--head", choices=("framewise", "ctc"), default="framewise")
    p.add_argument("--epochs", type=positive_int, default=5, help="epochs (default 5)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    return p


_PRUNE_HELP = "ADMM-prune + retrain the GRU matrices of a saved model; export BSPC"
_PRUNE_DESCRIPTION = (
    "Prune the GRU weight matrices of a model saved by 'tvm-bsp train' to a "
    "compression rate (ADMM, hard pruning, masked retraining; resumable), export BSPC "
    "files, save the pruned model and print PER and the achieved rate."
)


def add_prune_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tvm-bsp prune`` on an ``add_subparsers()`` object; return its parser."""
    p = add_command(subparsers, "prune", run_prune, _PRUNE_HELP, _PRUNE_DESCRIPTION)
    p.add_argument("model", type=Path, help="model file written by 'tvm-bsp train'")
    p.add_argument("--rate", type=rate_arg, required=True, help="target compression, e.g. 19")
    p.add_argument("--method", choices=("bsp", "magnitude", "balanced"), default="bsp")
    p.add_argument(
        "--grid",
        type=grid_arg,
        default=None,
        help="BSP grid RBxCB of the H-wide matrices (default 24x16; the 39-wide input matrix "
        "uses RBx4)",
    )
    p.add_argument("--groups", type=positive_int, default=32, help="ESE row groups (default 32)")
    p.add_argument("--admm-epochs", type=non_negative_int, default=2, help="ADMM units (default 2)")
    p.add_argument(
        "--retrain-epochs", type=non_negative_int, default=6, help="retraining units (default 6)"
    )
    p.add_argument(
        "--utts-per-epoch",
        type=non_negative_int,
        default=350,
        help="utterances per unit (default 350; 0: the whole training split)",
    )
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    p.add_argument(
        "--distill",
        type=float,
        default=0.0,
        help="distillation weight in [0, 1]: loss = (1-w) CE + w KD from the teacher (default 0)",
    )
    p.add_argument(
        "--teacher",
        type=Path,
        default=None,
        help="distillation teacher model (default: MODEL; give the dense model when MODEL is "
        "already pruned at a lower rate, for gradual pruning)",
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    _add_data_options(p, "default: the one the model was trained on")
    return p


def _load_corpus(args: argparse.Namespace, corpus: Path, sizes: tuple[int, ...]):
    from tvm_bsp.speech.corpus import generate_corpus, load_split

    seed = args.corpus_seed or 0
    generate_corpus(corpus, *sizes, seed=seed, progress=not args.no_progress)
    return {s: load_split(corpus, s) for s in ("train", "dev", "test")}


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``tvm-bsp train``."""
    import torch

    from tvm_bsp.experiments.table1.run import ExperimentConfig, choose_decoding
    from tvm_bsp.speech.model import AcousticModel, ModelConfig, save_model
    from tvm_bsp.speech.train import evaluate_per, train_model

    torch.set_num_threads(args.threads)
    try:
        sizes = corpus_sizes(args)
        config = ModelConfig(cell=args.cell, hidden=args.hidden, layers=args.layers, head=args.head)
    except ValueError as err:
        return fail("train", str(err), 2)
    args.corpus_seed = args.corpus_seed or 0
    corpus = args.corpus or Path(".cache") / (
        f"corpus-{sizes[0]}-{sizes[1]}-{sizes[2]}-s{args.corpus_seed}"
    )
    try:
        data = _load_corpus(args, corpus, sizes)
        if not data["train"]:
            return fail("train", f"corpus {corpus} has no training utterances", 2)
        torch.manual_seed(args.seed)
        model = AcousticModel(config)
        t0 = time.time()
        train_model(
            model,
            data["train"],
            data["dev"] or data["train"][:50],
            epochs=args.epochs,
            lr=args.lr,
            seed=args.seed,
            checkpoint=Path(str(args.out) + ".ckpt"),
            progress=not args.no_progress,
        )
        decode, _ = choose_decoding(model, data["dev"], ExperimentConfig())
        per = {s: evaluate_per(model, data[s], **decode) for s in ("dev", "test") if data[s]}
        extra = {
            "corpus": str(corpus),
            "sizes": list(sizes),
            "corpus_seed": args.corpus_seed,
            "decode": decode,
            "per": per,
            "train_wall_s": time.time() - t0,
        }
        pt, cfg = save_model(model, args.out, extra=extra)
    except (ValueError, RuntimeError, OSError) as err:
        return fail("train", str(err))
    print(f"saved {pt} and {cfg}")
    for split, value in per.items():
        print(f"{split} PER {value:.2f}%")
    return 0


def _load_saved(load_model: Any, path: Path) -> Any:
    """``load_model(path)``, with unreadable state dicts as one-line ``ValueError``s."""
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of payloads
            warnings.simplefilter("ignore", UserWarning)
            return load_model(path)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError:
        raise ValueError(
            f"cannot read {path}: it holds pickled objects other than tensors, refused "
            "(loading them could run code); expected a state dict written by tvm-bsp train"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"cannot read {path} as a saved model: {first}") from None


def run_prune(args: argparse.Namespace) -> int:
    """Handler of ``tvm-bsp prune``."""
    import torch

    from tvm_bsp.prune import NotBSPError, export_bspc
    from tvm_bsp.prune.config import spec_to_dict
    from tvm_bsp.speech.model import load_model, save_model
    from tvm_bsp.speech.prune_run import PruneSettings, prune_config, prune_model
    from tvm_bsp.speech.train import evaluate_per

    torch.set_num_threads(args.threads)
    try:
        dense, extra = _load_saved(load_model, args.model)
    except (FileNotFoundError, ValueError) as err:
        return fail("prune", str(err), 1)
    if not 0 <= args.distill <= 1:
        return fail("prune", f"--distill must be in [0, 1], got {args.distill}", 2)
    teacher = None
    if args.teacher is not None:
        try:
            teacher, _ = _load_saved(load_model, args.teacher)
        except (FileNotFoundError, ValueError) as err:
            return fail("prune", f"teacher: {err}", 1)
    grid = {} if args.grid is None else {"row_blocks": args.grid[0], "col_blocks": args.grid[1]}
    settings = PruneSettings(
        **grid,
        balanced_groups=args.groups,
        admm_epochs=args.admm_epochs,
        retrain_epochs=args.retrain_epochs,
        utts_per_epoch=args.utts_per_epoch,
        lr=args.lr,
        distill_weight=args.distill,
    )
    try:
        specs = prune_config(dense, args.method, args.rate, settings)
        from tvm_bsp.prune.admm import prunable_shapes
        from tvm_bsp.prune.config import resolve_config

        resolve_config(prunable_shapes(dense), specs)
        sizes = corpus_sizes(args, tuple(extra.get("sizes", DEFAULT_SIZES)))
        if args.corpus_seed is None:
            args.corpus_seed = int(extra.get("corpus_seed", 0))
    except ValueError as err:
        return fail("prune", str(err), 2)
    corpus = args.corpus or Path(
        extra.get("corpus", f".cache/corpus-{sizes[0]}-{sizes[1]}-{sizes[2]}-s{args.corpus_seed}")
    )
    decode = extra.get("decode", {"smooth": 7, "min_run": 4})
    out: Path = args.out
    try:
        data = _load_corpus(args, corpus, sizes)
        if not data["train"]:
            return fail("prune", f"corpus {corpus} has no training utterances", 2)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        result = prune_model(
            dense,
            data["train"],
            args.method,
            args.rate,
            settings,
            checkpoint_dir=out / "admm",
            progress=not args.no_progress,
            teacher=teacher,
        )
        per = {s: evaluate_per(result.model, data[s], **decode) for s in ("dev", "test") if data[s]}
        bspc = None
        if args.method == "bsp":
            export_bspc(result.model, result.pruner, out / "bspc")
            bspc = str(out / "bspc")
        record = {
            "rate": args.rate,
            "method": args.method,
            "achieved_rate": result.achieved_rate,
            "kept": result.kept,
            "total": result.total,
            "per": per,
            "per_dense": extra.get("per", {}),
            "specs": {n: spec_to_dict(s) for n, s in specs.items()},
            "settings": settings.to_dict(),
            "bspc_dir": bspc,
            "wall_s": time.time() - t0,
        }
        save_model(
            result.model,
            out / "model.pt",
            extra={
                **extra,
                "per": per,
                "pruned": {k: v for k, v in record.items() if k != "specs"},
            },
        )
        (out / "result.json").write_text(json.dumps(record, indent=2) + "\n")
    except NotBSPError as err:
        return fail("prune", f"BSPC export failed: {err}")
    except (ValueError, RuntimeError, OSError) as err:
        return fail("prune", str(err))
    print(
        f"{args.method} {args.rate:g}x: achieved {result.achieved_rate:.2f}x "
        f"({result.kept} of {result.total} GRU weights kept)"
    )
    for split, value in per.items():
        dense_per = extra.get("per", {}).get(split)
        loss = (
            "" if dense_per is None else f" (dense {dense_per:.2f}%, loss {value - dense_per:+.2f})"
        )
        print(f"{split} PER {value:.2f}%{loss}")
    if bspc:
        print(f"BSPC files in {bspc}")
    else:
        print(f"no BSPC export: {args.method} masks are not block-structured")
    print(f"pruned model in {out / 'model.pt'}")
    return 0
