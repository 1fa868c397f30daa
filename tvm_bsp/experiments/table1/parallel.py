"""The method chains of a Table I run in worker processes (one torch thread each)."""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from tvm_bsp.experiments.table1.config import ExperimentConfig
from tvm_bsp.experiments.table1.rows import RowContext, row_order, run_chain, teacher_scores_of
from tvm_bsp.experiments.table1.work import Work, load_data
from tvm_bsp.speech.model import load_model


def _watch_parent(parent: int, stop: Any) -> None:
    """Worker side: exit at once when the parent process dies or sets ``stop``."""
    import threading

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                os._exit(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


def _chain_worker(
    root: str, config: ExperimentConfig, corpus_dir: str | None, method: str, echo: bool
) -> int:
    """One method's chain in a worker process (one torch thread); returns the units trained."""
    torch.set_num_threads(1)
    work = Work(root, print if echo else None)
    train, evals = load_data(work, config, False, corpus_dir, quiet=True)
    dense, _ = load_model(work.root / "dense" / "model.pt")
    decode = json.loads((work.root / "dense" / "eval.json").read_text())["decode"]
    scores = teacher_scores_of(work, config, dense, train)
    ctx = RowContext(work, config, dense, train, evals, decode, False, scores)
    return run_chain(ctx, method)[2]


def run_chains_in_parallel(
    work: Work,
    config: ExperimentConfig,
    corpus_dir: str | os.PathLike | None,
    jobs: int,
    echo: bool,
    finished: set[str],
) -> int:
    """Run the unfinished method chains in up to ``jobs`` worker processes; units trained.

    ``finished`` names the rows already done (``"bsp-10"``, ...).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pending = [
        m for m in config.methods if any(f"{m}-{r:g}" not in finished for r in row_order(config))
    ]
    if len(pending) < 2:
        return 0  # nothing to share out: the caller runs the chain itself
    work.log(f"running the chains of {', '.join(pending)} in {min(jobs, len(pending))} processes")
    trained = 0
    corpus = None if corpus_dir is None else str(corpus_dir)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()  # set: every worker exits (its row resumes from the checkpoint)
    with ProcessPoolExecutor(
        min(jobs, len(pending)),
        mp_context=context,
        initializer=_watch_parent,
        initargs=(os.getpid(), stop),
    ) as pool:
        futures = {
            pool.submit(_chain_worker, str(work.root), config, corpus, m, echo): m for m in pending
        }
        try:
            for future in as_completed(futures):
                trained += future.result()
        except BaseException:
            # a failed chain or Ctrl-C: stop the other chains now instead of finishing them
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return trained
