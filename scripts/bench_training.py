#!/usr/bin/env python
"""Training throughput (frames per second) of the acoustic model, side by side in one run.

Times one training pass over the same utterances of a corpus split for each way of training:
whole utterances in float32 (the old default), chunks of frames, bfloat16 autocast, and the
distillation unit of pruning with the teacher run per batch or taken from its cached scores
(:mod:`tvm_bsp.speech.teacher`). Each variant runs ``--repeats`` times; the table gives the
median frames/s and the ratio to the first row. The timed passes train the model (Adam), as
training does.

Examples
--------
    python scripts/bench_training.py --corpus .cache/corpus-4000-400-400-s0 --hidden 512 \\
        --utts 300 --json results/bench_training.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from tvm_bsp.speech.batching import ChunkSettings
from tvm_bsp.speech.corpus import load_split
from tvm_bsp.speech.model import AcousticModel, ModelConfig
from tvm_bsp.speech.precision import bf16_native
from tvm_bsp.speech.storage import atomic_write_text
from tvm_bsp.speech.teacher import TeacherScores
from tvm_bsp.speech.train import distilled_loss_fn, train_epoch

VARIANTS = (
    # name, chunks, bf16, max_frames, distill, cached teacher
    ("utterances fp32", None, False, 12000, False, False),
    ("chunks fp32", ChunkSettings(), False, 12000, False, False),
    ("utterances bf16", None, True, 12000, False, False),
    ("chunks bf16", ChunkSettings(), True, 12000, False, False),
    ("chunks bf16, 24k frames/batch", ChunkSettings(), True, 24000, False, False),
    ("distill: utterances fp32, teacher per batch", None, False, 6000, True, False),
    ("distill: chunks bf16, teacher per batch", ChunkSettings(), True, 6000, True, False),
    ("distill: chunks bf16, cached teacher", ChunkSettings(), True, 6000, True, True),
)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True, help="corpus directory (tvm-bsp train makes one)")
    p.add_argument("--split", default="train")
    p.add_argument("--utts", type=int, default=300, help="utterances per timed pass")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", dest="json_path", default=None)
    p.add_argument(
        "--accuracy-epochs",
        type=int,
        default=0,
        help="also train each of float32 / whole utterances and bf16 / chunks for this many "
        "epochs on the --utts utterances from the same start and report dev PER (0: skip)",
    )
    p.add_argument("--dev-utts", type=int, default=200, help="dev utterances scored")
    return p


def accuracy_check(config, utts, dev, epochs: int) -> list[dict]:
    """Dev PER after ``epochs`` of each precision/batching setting, same seed and start."""
    from tvm_bsp.speech.train import evaluate_per

    out = []
    for name, chunks, bf16 in (
        ("utterances fp32", None, False),
        ("chunks bf16", ChunkSettings(), True),
    ):
        torch.manual_seed(0)
        model = AcousticModel(config)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        t0 = time.perf_counter()
        losses = [
            train_epoch(model, utts, opt, epoch=e, progress=False, chunks=chunks, bf16=bf16)["loss"]
            for e in range(epochs)
        ]
        wall = time.perf_counter() - t0
        per = evaluate_per(model, dev)
        out.append(
            {"variant": name, "epochs": epochs, "losses": losses, "dev_per": per, "train_s": wall}
        )
        print(
            f"  accuracy: {name}: dev PER {per:.2f}% after {epochs} epochs ({wall:.0f} s)",
            file=sys.stderr,
        )
    return out


def time_variant(model, teacher, utts, variant, cached, repeats) -> list[float]:
    """Frames/s of ``repeats`` training passes of one variant (fresh optimizer, same start)."""
    _, chunks, bf16, max_frames, distill, use_cache = variant
    loss_fn = None
    if distill:
        loss_fn = distilled_loss_fn(teacher, 0.7, 2.0, cached if use_cache else None)
    rates = []
    for r in range(repeats):
        m = copy.deepcopy(model)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        t0 = time.perf_counter()
        out = train_epoch(
            m,
            utts,
            opt,
            epoch=r,
            max_frames=max_frames,
            progress=False,
            loss_fn=loss_fn,
            chunks=chunks,
            bf16=bf16,
        )
        rates.append(out["frames"] / (time.perf_counter() - t0))
    return rates


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; write ``--json``."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    utts = load_split(args.corpus, args.split)[: args.utts]
    config = ModelConfig(cell="gru", hidden=args.hidden, layers=args.layers, head="framewise")
    torch.manual_seed(0)
    model, teacher = AcousticModel(config), AcousticModel(config)
    t0 = time.perf_counter()
    cached = TeacherScores.compute(teacher, utts)
    cache_s = time.perf_counter() - t0
    frames = sum(len(u.features) for u in utts)
    print(
        f"{len(utts)} utterances ({frames} frames), 2x{args.hidden} GRU, "
        f"{args.threads} thread(s), bf16 native: {bf16_native()}; "
        f"teacher cache built in {cache_s:.1f} s",
        file=sys.stderr,
    )
    records = []
    for variant in VARIANTS:
        rates = time_variant(model, teacher, utts, variant, cached, args.repeats)
        records.append(
            {
                "variant": variant[0],
                "hidden": args.hidden,
                "layers": args.layers,
                "threads": args.threads,
                "frames_per_s": statistics.median(rates),
                "runs": rates,
                "max_frames": variant[3],
                "bf16": variant[2],
                "chunks": None if variant[1] is None else vars(variant[1]),
            }
        )
        print(f"  {variant[0]}: {statistics.median(rates):.0f} frames/s", file=sys.stderr)
    base = {True: None, False: None}
    for rec in records:
        kind = rec["variant"].startswith("distill")
        base[kind] = base[kind] or rec["frames_per_s"]
        rec["ratio"] = rec["frames_per_s"] / base[kind]
    print("| variant | frames/s (median) | ratio |\n| --- | --- | --- |")
    for rec in records:
        print(f"| {rec['variant']} | {rec['frames_per_s']:.0f} | {rec['ratio']:.2f} |")
    accuracy = []
    if args.accuracy_epochs > 0:
        dev = load_split(args.corpus, "dev")[: args.dev_utts]
        accuracy = accuracy_check(config, utts, dev, args.accuracy_epochs)
        print("\n| variant | epochs | dev PER | train s |\n| --- | --- | --- | --- |")
        for rec in accuracy:
            print(
                f"| {rec['variant']} | {rec['epochs']} | {rec['dev_per']:.2f} | "
                f"{rec['train_s']:.0f} |"
            )
    if args.json_path:
        doc = {
            "accuracy": accuracy,
            "utterances": len(utts),
            "frames": frames,
            "bf16_native": bf16_native(),
            "teacher_cache_s": cache_s,
            "records": records,
        }
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.json_path), json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
