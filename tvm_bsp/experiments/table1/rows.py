"""The rows of a Table I run: one pruned model per (method, rate), chained per method."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tvm_bsp.experiments.table1.config import ExperimentConfig
from tvm_bsp.experiments.table1.dense import evaluate, format_per
from tvm_bsp.experiments.table1.work import Work, check_row_settings, write_json
from tvm_bsp.speech.model import AcousticModel, load_model, save_model
from tvm_bsp.speech.prune_run import paper_split, prune_model
from tvm_bsp.speech.teacher import TeacherScores
from tvm_bsp.speech.train import UtteranceLike


@dataclass
class RowContext:
    """What every row of a run shares: the work directory, settings, data and dense model.

    Attributes
    ----------
    work : Work
    config : ExperimentConfig
    dense : AcousticModel
        The dense model (the start of every chain and the distillation teacher).
    train : sequence
        Training utterances.
    evals : dict
        Evaluation utterances per split.
    decode : dict
        Decoding settings chosen with the dense model.
    progress : bool
        Progress bars.
    teacher_scores : TeacherScores, optional
        The dense model's scores of the training utterances, computed once per run
        (:func:`teacher_scores_of`).
    """

    work: Work
    config: ExperimentConfig
    dense: AcousticModel
    train: Sequence[UtteranceLike]
    evals: dict[str, Sequence[UtteranceLike]]
    decode: dict[str, int]
    progress: bool
    teacher_scores: TeacherScores | None = None


def teacher_scores_of(
    work: Work, config: ExperimentConfig, dense: AcousticModel, train: Sequence[UtteranceLike]
) -> TeacherScores | None:
    """The dense model's scores of ``train``, computed once into ``work/teacher`` and reused.

    ``None`` when the run does not distill. The files are rebuilt when they do not cover the
    training split (another corpus) or are older than the dense model.
    """
    if config.prune.distill_weight <= 0:
        return None
    root, model_file = work.root / "teacher", work.root / "dense" / "model.pt"
    index = root / "index.json"
    if index.exists() and index.stat().st_mtime >= model_file.stat().st_mtime:
        try:
            scores = TeacherScores.load(root)
            if scores.covers(train):
                return scores
        except ValueError:
            pass
    t0 = time.time()
    TeacherScores.compute(dense, train).save(root)
    work.log(f"teacher scores of {len(train)} utterances cached ({time.time() - t0:.0f} s)")
    return TeacherScores.load(root)


def run_row(
    ctx: RowContext,
    method: str,
    rate: float,
    start: AcousticModel | None = None,
    start_from: str = "dense",
) -> tuple[dict[str, Any], int]:
    """Prune, retrain, evaluate and save one row; return its result and the units trained.

    ``start`` (default ``ctx.dense``) is the model the row prunes, named ``start_from`` in the
    result; ``ctx.dense`` stays the distillation teacher. A row started from the dense model
    retrains ``first_retrain_epochs`` units (:meth:`PruneSettings.for_row`).
    """
    from tvm_bsp.prune import export_bspc
    from tvm_bsp.prune.config import spec_to_dict

    work, config, dense, evals = ctx.work, ctx.config, ctx.dense, ctx.evals
    settings = config.prune.for_row(first=start_from == "dense")

    rdir = work.row_dir(method, rate)
    rdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    def log(line: str) -> None:
        work.log(line)
        work.event(kind="prune_epoch", method=method, rate=rate, line=line)

    out = prune_model(
        dense if start is None else start,
        ctx.train,
        method,
        rate,
        settings,
        checkpoint_dir=rdir / "admm",
        progress=ctx.progress,
        log=log,
        teacher=dense,
        teacher_scores=ctx.teacher_scores,
    )
    per = evaluate(out.model, evals, ctx.decode)
    bspc = None
    if method == "bsp":
        export_bspc(out.model, out.pruner, rdir / "bspc")
        bspc = str(rdir / "bspc")
    col_rate, row_rate = paper_split(rate) if method == "bsp" else (None, None)
    result = {
        "rate": rate,
        "method": method,
        "per": per,
        "achieved_rate": out.achieved_rate,
        "kept": out.kept,
        "total": out.total,
        "col_rate": col_rate,
        "row_rate": row_rate,
        "effective_row_rate": out.achieved_rate / col_rate if col_rate else None,
        "per_matrix_rate": {
            n: float(m.numel() / max(1, int(m.sum()))) for n, m in out.masks.items()
        },
        "specs": {n: spec_to_dict(s) for n, s in out.config.items()},
        "prune": settings.to_dict(),
        "bspc_dir": bspc,
        "start_from": start_from,
        "history": [
            {"epoch": h["epoch"], "phase": h["phase"], "loss": h["metrics"].get("loss")}
            for h in out.history
        ],
        "wall_s": time.time() - t0,
    }
    save_model(out.model, rdir / "model.pt", extra={"per": per, "rate": out.achieved_rate})
    write_json(rdir / "result.json", result)
    work.log(
        f"{method} {rate:g}x: achieved {out.achieved_rate:.2f}x, PER {format_per(per)} "
        f"({result['wall_s']:.0f} s)"
    )
    return result, out.epochs_run


def row_order(config: ExperimentConfig) -> list[float]:
    """Rates in the order rows run: ascending when gradual, else as given (duplicates dropped)."""
    rates = list(dict.fromkeys(config.rates))
    return sorted(rates) if config.gradual else rates


def make_records(rows: Sequence[dict[str, Any]], dense: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten row results into the per-(row, split) JSON records."""
    records = []
    for row in rows:
        for split, per in row["per"].items():
            records.append(
                {
                    "rate": row["rate"],
                    "method": row["method"],
                    "per": per,
                    "per_dense": dense["per"][split],
                    "per_loss": per - dense["per"][split],
                    "achieved_rate": row["achieved_rate"],
                    "split": split,
                    "kept": row["kept"],
                    "total": row["total"],
                    "col_rate": row["col_rate"],
                    "row_rate": row["row_rate"],
                    "effective_row_rate": row["effective_row_rate"],
                    "grid": _grid_of(row),
                    "admm_epochs": row["prune"]["admm_epochs"],
                    "retrain_epochs": row["prune"]["retrain_epochs"],
                    "utts_per_epoch": row["prune"]["utts_per_epoch"],
                    "wall_s": row["wall_s"],
                }
            )
    return records


def _grid_of(row: dict[str, Any]) -> dict[str, Any] | None:
    if row["method"] == "bsp":
        return {n: [s["row_blocks"], s["col_blocks"]] for n, s in row["specs"].items()}
    if row["method"] == "balanced":
        return {n: s["groups"] for n, s in row["specs"].items()}
    return None


def run_chain(
    ctx: RowContext, method: str, report_only: bool = False
) -> tuple[list[dict[str, Any]], list[str], int]:
    """Run (or skip when finished) the rows of one method in :func:`row_order`.

    Returns the rows' results, the names of the rows found finished and the units trained.
    Rows finished before a split was added are evaluated on it now.
    """
    work, config, evals = ctx.work, ctx.config, ctx.evals
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    trained = 0
    previous = "dense"
    for rate in row_order(config):
        rdir = work.row_dir(method, rate)
        done = rdir / "result.json"
        expected_start = previous if config.gradual else "dense"
        if done.exists():
            row = json.loads(done.read_text())
            check_row_settings(rdir, row, config.prune.method_dict(method))
            if row.get("start_from", "dense") != expected_start:
                raise ValueError(
                    f"{rdir} started from {row.get('start_from', 'dense')!r}, but with "
                    f"rates {list(config.rates)} it would start from {expected_start!r}; "
                    "use another work directory for another rate list"
                )
            missing = [s for s in evals if s not in row["per"]]
            if missing:
                model, _ = load_model(rdir / "model.pt")
                sub = {s: evals[s] for s in missing}
                row["per"].update(evaluate(model, sub, ctx.decode))
                write_json(done, row)
            skipped.append(f"{method}-{rate:g}")
            work.log(f"{method} {rate:g}x: finished, loaded")
        elif report_only:
            if config.gradual:
                break  # later rows of the chain cannot be finished either
            continue
        else:
            start = None
            if expected_start != "dense":
                start, _ = load_model(work.root / "rows" / expected_start / "model.pt")
            row, units = run_row(ctx, method, rate, start=start, start_from=expected_start)
            trained += units
        rows.append(row)
        previous = rdir.name
    return rows, skipped, trained
