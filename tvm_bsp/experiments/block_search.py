"""Block-size search: accuracy (PER) and streaming latency of BSP block grids and rates.

RTMobile tunes the block size of BSP pruning: finer grids keep accuracy at a given rate but
cost the kernel more index overhead. For a trained dense acoustic model
(:mod:`tvm_bsp.speech`), every candidate ``(row_blocks x col_blocks, rate)``

1. is BSP-pruned with :func:`tvm_bsp.speech.prune_run.prune_model` (short ADMM phase, hard
   projection, short masked fine-tune; the first layer's 39-wide input matrix uses
   ``min(col_blocks, input_col_blocks)`` column stripes),
2. scored by PER on the dev split (:func:`tvm_bsp.speech.train.evaluate_per`),
3. exported as BSPC (:func:`tvm_bsp.prune.export_bspc`; the pruned model is saved beside it
   as ``model.pt``, so ``tvm-bsp tune`` / ``compile`` can take it), compiled with
   :func:`tvm_bsp.compile_model` (with the tuned records of ``db`` when given, defaults
   otherwise) and timed per frame in streaming (:func:`stream_us_per_frame`).

Each finished candidate is cached as ``WORK/<rb>x<cb>-r<rate>/record.json`` (a rerun skips it;
the pruning itself resumes from its ADMM checkpoint). :func:`pareto_flags` marks the points
that no other point beats on both PER and latency.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tvm_bsp.bspc.grid import parse_grid_list

__all__ = [
    "SearchSettings",
    "block_search",
    "format_table",
    "pareto_flags",
    "parse_grids",
    "plot_records",
    "stream_us_per_frame",
]


@dataclass(frozen=True)
class SearchSettings:
    """How much work each candidate gets.

    Attributes
    ----------
    admm_epochs, retrain_epochs, utts_per_epoch : int
        Pruning schedule (:class:`tvm_bsp.speech.prune_run.PruneSettings`).
    input_col_blocks : int
        Column stripes of the first layer's input matrix (capped by ``col_blocks``).
    lr : float
    decode : dict
        Decoding settings of :func:`~tvm_bsp.speech.train.evaluate_per`.
    frames : int
        Streaming frames timed per repeat.
    repeat : int
        Timing repeats (the fastest is reported).
    """

    admm_epochs: int = 1
    retrain_epochs: int = 2
    utts_per_epoch: int = 200
    input_col_blocks: int = 4
    lr: float = 2e-3
    decode: Mapping[str, int] | None = None
    frames: int = 50
    repeat: int = 5


def parse_grids(text: str) -> list[tuple[int, int]]:
    """``"6x4,12x8"`` as ``[(6, 4), (12, 8)]`` (:func:`tvm_bsp.bspc.grid.parse_grid_list`).

    Raises
    ------
    ValueError
        For anything but comma-separated ``ROWSxCOLS`` with positive integers, or a repeat.
    """
    return parse_grid_list(text)


def pareto_flags(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which points are Pareto-optimal when both coordinates are to be minimized.

    A point is dominated when another point is no worse in both coordinates and better in
    at least one; equal points are both kept.

    Parameters
    ----------
    points : sequence of (float, float)
        E.g. ``(per, us_per_frame)``.

    Returns
    -------
    list of bool
        ``True`` for the non-dominated points, in input order.

    Raises
    ------
    ValueError
        If a coordinate is NaN.
    """
    pts = [(float(a), float(b)) for a, b in points]
    if any(math.isnan(a) or math.isnan(b) for a, b in pts):
        raise ValueError("Pareto marking needs numbers, got NaN")
    return [
        not any(
            qa <= pa and qb <= pb and (qa < pa or qb < pb)
            for j, (qa, qb) in enumerate(pts)
            if j != i
        )
        for i, (pa, pb) in enumerate(pts)
    ]


def stream_us_per_frame(compiled: Any, frames: int = 50, repeat: int = 5, seed: int = 0) -> float:
    """Microseconds per streaming ``step`` of a host-runnable compiled model.

    Each repeat streams ``frames`` frames; the fastest repeat's mean is returned (on a
    shared machine other processes only add time, so the least disturbed repeat is the
    best estimate of the kernel's own cost).

    Parameters
    ----------
    compiled : tvm_bsp.compiler.model.CompiledModel
    frames : int
        Steps per repeat (each from the previous state).
    repeat : int
    seed : int

    Returns
    -------
    float
    """
    session = compiled.session
    rng = np.random.default_rng(seed)
    I = int(compiled.meta["input_size"])
    x = rng.standard_normal((frames, 1, I)).astype(np.float32)
    session.reset()
    session.push(x[0])  # warm-up
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        for t in range(frames):
            session.push(x[t])
        times.append((time.perf_counter() - t0) / frames * 1e6)
    session.reset()
    return float(min(times))


def _cand_dir(work: Path, grid: tuple[int, int], rate: float) -> Path:
    return work / f"{grid[0]}x{grid[1]}-r{rate:g}"


def _evaluate(
    dense: Any,
    train: Sequence[Any],
    dev: Sequence[Any],
    grid: tuple[int, int],
    rate: float,
    cdir: Path,
    settings: SearchSettings,
    target: Any,
    db: Any,
    progress: bool,
) -> dict[str, Any]:
    from tvm_bsp.compiler.model import compile_model
    from tvm_bsp.prune import export_bspc
    from tvm_bsp.speech.prune_run import PruneSettings, prune_model
    from tvm_bsp.speech.train import evaluate_per

    prune = PruneSettings(
        row_blocks=grid[0],
        col_blocks=grid[1],
        input_col_blocks=min(grid[1], settings.input_col_blocks),
        admm_epochs=settings.admm_epochs,
        retrain_epochs=settings.retrain_epochs,
        utts_per_epoch=settings.utts_per_epoch,
        lr=settings.lr,
    )
    t0 = time.time()
    result = prune_model(
        dense, train, "bsp", rate, prune, checkpoint_dir=cdir / "admm", progress=progress
    )
    decode = dict(settings.decode or {"smooth": 7, "min_run": 4})
    per = evaluate_per(result.model, dev, **decode)
    bspc_dir = cdir / "bspc"
    export_bspc(result.model, result.pruner, bspc_dir)
    from tvm_bsp.speech.model import save_model

    save_model(result.model, cdir / "model.pt", extra={"grid": list(grid), "rate": rate})
    compiled = compile_model(result.model, target, str(bspc_dir), db)
    us = stream_us_per_frame(compiled, settings.frames, settings.repeat)
    return {
        "grid": [int(grid[0]), int(grid[1])],
        "rate": float(rate),
        "achieved_rate": float(result.achieved_rate),
        "per": float(per),
        "us_per_frame": us,
        "tuned_layers": sorted(compiled.meta.get("tuned", {})),
        "wall_s": time.time() - t0,
    }


def block_search(
    dense: Any,
    train: Sequence[Any],
    dev: Sequence[Any],
    grids: Sequence[tuple[int, int]],
    rates: Sequence[float],
    work_dir: str | os.PathLike[str],
    *,
    settings: SearchSettings = SearchSettings(),
    target: Any = "host",
    db: Any = None,
    progress: bool = False,
    log: Callable[[str], None] | None = print,
) -> list[dict[str, Any]]:
    """Evaluate every (grid, rate) candidate; mark the Pareto front of (PER, latency).

    Parameters
    ----------
    dense : tvm_bsp.speech.model.AcousticModel
        The trained dense model (not modified).
    train, dev : sequences of utterances
        Fine-tuning data and the PER split.
    grids : sequence of (int, int)
        ``(row_blocks, col_blocks)`` of the ``H``-wide matrices.
    rates : sequence of float
        Target compression rates of the GRU matrices.
    work_dir : path-like
        Cache of finished candidates and pruning checkpoints (rerun resumes).
    settings : SearchSettings
    target : str, dict or tvm.target.Target
        Must run on this machine (latency is measured here).
    db : TuningDatabase or path-like, optional
        Tuned records applied at compile time (defaults otherwise).
    progress : bool
        Training progress bars.
    log : callable, optional
        One line per candidate.

    Returns
    -------
    list of dict
        ``{grid, rate, achieved_rate, per, us_per_frame, pareto, ...}`` per candidate, in
        the order of ``grids`` x ``rates``.

    Raises
    ------
    ValueError
        For no candidates or an empty dev split.
    """
    if not grids or not rates:
        raise ValueError("block search needs at least one grid and one rate")
    if not dev:
        raise ValueError("block search needs a non-empty dev split for PER")
    say = log or (lambda _m: None)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    total = len(grids) * len(rates)
    for i, (grid, rate) in enumerate(((g, r) for g in grids for r in rates), start=1):
        cdir = _cand_dir(work, tuple(grid), float(rate))
        cache = cdir / "record.json"
        label = f"[{i}/{total}] grid {grid[0]}x{grid[1]} rate {rate:g}x"
        if cache.is_file():
            rec = json.loads(cache.read_text())
            say(f"{label}: cached")
        else:
            say(f"{label}: pruning + fine-tuning ...")
            cdir.mkdir(parents=True, exist_ok=True)
            rec = _evaluate(
                dense, train, dev, tuple(grid), float(rate), cdir, settings, target, db, progress
            )
            from tvm_bsp.bspc import atomic_write

            text = json.dumps(rec, indent=1).encode()
            atomic_write(cache, lambda f, data=text: f.write(data))
        say(
            f"{label}: achieved {rec['achieved_rate']:.2f}x, PER {rec['per']:.2f}%, "
            f"{rec['us_per_frame']:.1f} us/frame"
        )
        records.append(rec)
    flags = pareto_flags([(r["per"], r["us_per_frame"]) for r in records])
    return [{**r, "pareto": bool(f)} for r, f in zip(records, flags, strict=True)]


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """A text table of search records; Pareto-optimal rows are starred."""
    lines = [f"{'grid':>8} {'rate':>6} {'achieved':>9} {'PER %':>7} {'us/frame':>9}  pareto"]
    for r in records:
        grid = f"{r['grid'][0]}x{r['grid'][1]}"
        lines.append(
            f"{grid:>8} {r['rate']:>6g} {r['achieved_rate']:>9.2f} {r['per']:>7.2f} "
            f"{r['us_per_frame']:>9.1f}  {'*' if r.get('pareto') else ''}"
        )
    return "\n".join(lines)


def plot_records(records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Scatter PER vs latency (Pareto front joined), written atomically as an image.

    Returns
    -------
    pathlib.Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tvm_bsp.bspc import atomic_write

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in records:
        ax.scatter(
            r["us_per_frame"],
            r["per"],
            marker="o" if r.get("pareto") else "x",
            color="C0" if r.get("pareto") else "C1",
        )
        ax.annotate(
            f"{r['grid'][0]}x{r['grid'][1]} @{r['rate']:g}x",
            (r["us_per_frame"], r["per"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    front = sorted((r for r in records if r.get("pareto")), key=lambda r: r["us_per_frame"])
    if front:
        ax.plot([r["us_per_frame"] for r in front], [r["per"] for r in front], "C0--", lw=1)
    ax.set_xlabel("streaming latency (us / frame)")
    ax.set_ylabel("dev PER (%)")
    ax.set_title("BSP block-size search (o: Pareto-optimal)")
    fig.tight_layout()
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(dest, lambda f: fig.savefig(f, format=dest.suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)
    return dest
