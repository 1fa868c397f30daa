"""RTMobile Table I on the synthetic corpus: dense GRU, then BSP / ESE / magnitude pruning.

:func:`run_experiment` does, inside one work directory (every step resumable)::

    corpus-<train>-<dev>-<test>-s<seed>/   generate_corpus (reused when complete)
    settings.json                          the settings every finished step depends on
    dense/train.pt                         dense training checkpoint (every epoch)
    dense/model.pt, model.json             the dense model (save_model)
    dense/eval.json                        its PER per split
    rows/<method>-<rate>/admm/             admm_prune checkpoint (every unit)
    rows/<method>-<rate>/model.pt, .json   the pruned model
    rows/<method>-<rate>/bspc/             BSPC export (BSP rows)
    rows/<method>-<rate>/result.json       written last: the row is finished
    events.jsonl                           one line per trained epoch / unit
    log.txt                                the progress lines

A rerun skips finished rows, resumes a half-done one from its checkpoint, and refuses a work
directory made with other settings (rates, methods and splits may change freely). Settings only
one method reads (:data:`~tvm_bsp.speech.prune_run.METHOD_FIELDS`: the BSP grid, ESE's groups)
are checked per row instead: after a grid change, delete that method's rows and rerun; the dense
model and the other methods' rows are kept.

Gradual pruning (``ExperimentConfig.gradual``): the rates of a method run in ascending order
and each row starts from the finished model of the previous (lower) rate of the same method,
the first from the dense model; every step's projection is then a small move and the high
rates inherit all earlier retraining (RTMobile, Sec. IV-A: "the training process continues
iteratively until all the blocks are pruned"). A row records the row it started from
(``start_from``); a finished row whose predecessor differs from the one the current rate list
implies is refused (another rate list needs another work directory). The distillation teacher
is always the dense model.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tvm_bsp.experiments.table1.config import (
    PAPER_RATES,
    SPLITS,
    TABLE1_PRUNE,
    ExperimentConfig,
    quick_config,
    settings_digest,
    with_overrides,
)
from tvm_bsp.experiments.table1.dense import adopt_dense, choose_decoding, evaluate, train_dense
from tvm_bsp.experiments.table1.parallel import run_chains_in_parallel
from tvm_bsp.experiments.table1.rows import (
    RowContext,
    make_records,
    row_order,
    run_chain,
    run_row,
    teacher_scores_of,
)
from tvm_bsp.experiments.table1.work import Work, check_settings, load_data, write_json
from tvm_bsp.speech.prune_run import METHODS

__all__ = [
    "PAPER_RATES",
    "SPLITS",
    "TABLE1_PRUNE",
    "ExperimentConfig",
    "RowContext",
    "RunSummary",
    "choose_decoding",
    "evaluate",
    "load_data",
    "make_records",
    "quick_config",
    "row_order",
    "run_chain",
    "run_experiment",
    "run_row",
    "settings_digest",
    "train_dense",
    "with_overrides",
]


@dataclass
class RunSummary:
    """What :func:`run_experiment` returns.

    Attributes
    ----------
    records : list of dict
        One per (row, split): the JSON contract fields plus extras.
    dense : dict
        Dense PER per split and training history.
    trained_epochs : int
        Dense epochs plus pruning units trained by this call (0 on a finished rerun).
    skipped_rows : list of str
        Rows found finished (carried ones included).
    wall_s : float
    carried_rows : list of str
        Rows installed from ``rows_from`` by this call
        (:func:`tvm_bsp.experiments.table1.carry.install_rows`).
    """

    records: list[dict[str, Any]]
    dense: dict[str, Any]
    trained_epochs: int = 0
    skipped_rows: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    carried_rows: list[str] = field(default_factory=list)

    def to_json(self, config: ExperimentConfig) -> dict[str, Any]:
        """The JSON document ``scripts/table1.py --json`` writes."""
        return {
            "format": "tvm_bsp.table1",
            "version": 1,
            "records": self.records,
            "dense": self.dense,
            "config": config.to_dict(),
            "wall_s": self.wall_s,
        }


def run_experiment(
    work_dir: str | os.PathLike,
    config: ExperimentConfig | None = None,
    *,
    corpus_dir: str | os.PathLike | None = None,
    progress: bool = True,
    echo: Callable[[str], Any] | None = print,
    report_only: bool = False,
    jobs: int = 1,
    dense_from: str | os.PathLike | None = None,
    resume_from: str | os.PathLike | None = None,
    rows_from: str | os.PathLike | None = None,
) -> RunSummary:
    """Run (or resume) the whole experiment (module docstring).

    Parameters
    ----------
    work_dir : path-like
        Work directory.
    config : ExperimentConfig, optional
        Default: ``ExperimentConfig()``.
    corpus_dir : path-like, optional
        Use (or generate) the corpus there instead of inside ``work_dir``.
    progress : bool
        Progress bars.
    echo : callable, optional
        Receives the log lines (``print`` by default).
    report_only : bool
        Train nothing: report the finished rows only (needs the finished dense model).
    dense_from : path-like, optional
        A shipped dense model (:mod:`tvm_bsp.experiments.table1.ship`) to use instead of
        training one,
        when the work directory has none (its settings must be ``config``'s).
    resume_from : path-like, optional
        A dense-training checkpoint (``.safetensors``, :mod:`tvm_bsp.speech.train_state`) to
        continue from when the work directory has none (e.g. one committed by an earlier
        session of a long run).
    rows_from : path-like, optional
        A folder of rows saved by :func:`tvm_bsp.experiments.table1.carry.save_rows` (an
        earlier session's
        commit): its rows this work directory has not finished are installed (after the
        settings check) and then count as finished.
    jobs : int
        Worker processes for the method chains after dense training (each with one torch
        thread; ``1``: everything in this process). The chains are independent, so on a
        2-core machine ``jobs=2`` takes about half the time of ``jobs=1``.

    Returns
    -------
    RunSummary
    """
    config = config if config is not None else ExperimentConfig()
    for method in config.methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    t0 = time.time()
    work = Work(work_dir, echo)
    check_settings(work, config)
    carried: list[str] = []
    if rows_from is not None:
        from tvm_bsp.experiments.table1.carry import install_rows

        carried = install_rows(work.root, rows_from, config=config)
        work.log(f"rows carried from {rows_from}: {', '.join(carried) or 'none'}")
    train, evals = load_data(work, config, progress, corpus_dir)
    if report_only and not (work.root / "dense" / "eval.json").exists():
        raise ValueError(f"{work.root} has no finished dense model to report on")
    if dense_from is not None:
        adopt_dense(work, config, dense_from)
    ckpt = work.root / "dense" / "train.safetensors"
    if resume_from is not None and not ckpt.exists():
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(resume_from, ckpt)
        work.log(f"dense training resumes from {resume_from}")
    dense, dense_record, trained = train_dense(work, config, train, evals, progress)
    decode = dense_record["decode"]
    finished_before = {
        f"{m}-{r:g}"
        for m in config.methods
        for r in row_order(config)
        if (work.row_dir(m, r) / "result.json").exists()
    }
    if not report_only and config.methods:
        teacher_scores_of(work, config, dense, train)  # once, before the workers start
    if jobs > 1 and not report_only:
        trained += run_chains_in_parallel(
            work, config, corpus_dir, jobs, echo is not None, finished_before
        )
    rows, skipped = [], []
    for method in config.methods:
        scores = None if report_only else teacher_scores_of(work, config, dense, train)
        ctx = RowContext(work, config, dense, train, evals, decode, progress, scores)
        chain_rows, chain_skipped, units = run_chain(ctx, method, report_only)
        rows += chain_rows
        skipped += [name for name in chain_skipped if name in finished_before]
        trained += units
    missing_dense = [s for s in evals if s not in dense_record["per"]]
    if missing_dense:
        sub = {s: evals[s] for s in missing_dense}
        dense_record["per"].update(evaluate(dense, sub, decode))
        write_json(work.root / "dense" / "eval.json", dense_record)
    rows = [{**r, "per": {s: r["per"][s] for s in evals if s in r["per"]}} for r in rows]
    dense_out = {
        "per": {s: dense_record["per"][s] for s in evals},
        "params": dense_record["params"],
        "decode": decode,
        "decode_dev_per": dense_record.get("decode_dev_per", {}),
        "train_wall_s": dense_record["train_wall_s"],
        "history": dense_record["history"],
        "settings": settings_digest(config),
    }
    summary = RunSummary(
        records=make_records(rows, dense_out),
        dense=dense_out,
        trained_epochs=trained,
        skipped_rows=skipped,
        wall_s=time.time() - t0,
        carried_rows=carried,
    )
    work.log(f"done: {len(rows)} rows, {trained} epochs trained, {summary.wall_s:.0f} s")
    return summary
