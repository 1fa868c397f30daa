"""The work directory of a Table I run: paths, log, settings checks, the corpus."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tvm_bsp.experiments.table1.config import SPLITS, ExperimentConfig
from tvm_bsp.speech.prune_run import without_method_fields
from tvm_bsp.speech.storage import atomic_write_text
from tvm_bsp.speech.train import UtteranceLike


class Work:
    """Paths and logging of a work directory."""

    def __init__(self, root: str | os.PathLike, echo: Callable[[str], Any] | None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.echo = echo

    def log(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with open(self.root / "log.txt", "a") as fh:
            fh.write(f"{stamp} {line}\n")
        if self.echo is not None:
            self.echo(line)

    def event(self, **data: Any) -> None:
        with open(self.root / "events.jsonl", "a") as fh:
            fh.write(json.dumps({"time": time.time(), **data}) + "\n")

    def row_dir(self, method: str, rate: float) -> Path:
        return self.root / "rows" / f"{method}-{rate:g}"


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def check_settings(work: Work, config: ExperimentConfig) -> None:
    path = work.root / "settings.json"
    core = json.loads(json.dumps(config.core()))
    if path.exists():
        old = json.loads(path.read_text())
        if isinstance(old.get("prune"), dict):  # work directories written before METHOD_FIELDS
            old["prune"] = without_method_fields(old["prune"])
        if old != core:
            diff = sorted(k for k in set(old) | set(core) if old.get(k) != core.get(k))
            raise ValueError(
                f"{work.root} holds a run with other settings (differing: {', '.join(diff)}); "
                "use another work directory or delete this one"
            )
    else:
        write_json(path, core)


def check_row_settings(rdir: Path, row: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Refuse a finished row made with other method-specific settings (e.g. another grid)."""
    had = {k: row.get("prune", {}).get(k) for k in wanted}
    if had != wanted:
        diff = ", ".join(f"{k} {had[k]!r} -> {wanted[k]!r}" for k in wanted if had[k] != wanted[k])
        raise ValueError(
            f"{rdir} was pruned with other settings ({diff}); delete the rows of method "
            f"{row.get('method')!r} (rows/{row.get('method')}-*) to rerun them, or use another "
            "work directory"
        )


def load_data(
    work: Work,
    config: ExperimentConfig,
    progress: bool,
    corpus_dir: str | os.PathLike | None,
    quiet: bool = False,
) -> tuple[list[UtteranceLike], dict[str, list[UtteranceLike]]]:
    """Generate or reuse the corpus; return the training split and the evaluation splits.

    ``quiet``: neither generate (the corpus must be complete) nor log: worker processes
    load the corpus their parent made and logged.
    """
    from tvm_bsp.speech.corpus import generate_corpus, load_split

    root = (
        Path(corpus_dir)
        if corpus_dir is not None
        else work.root
        / (f"corpus-{config.n_train}-{config.n_dev}-{config.n_test}-s{config.corpus_seed}")
    )
    if not quiet:
        t0 = time.time()
        info = generate_corpus(
            root,
            config.n_train,
            config.n_dev,
            config.n_test,
            seed=config.corpus_seed,
            progress=progress,
        )
        work.log(f"corpus {root}: {info.finished} utterances ({time.time() - t0:.0f} s)")
    train = load_split(root, "train")
    evals: dict[str, list[UtteranceLike]] = {}
    for split in config.splits:
        if split in ("dev", "test"):
            evals[split] = load_split(root, split)
        elif split == "real":
            from tvm_bsp.speech.real import RealSpeechUnavailableError, load_real_utterances

            try:
                evals[split] = load_real_utterances()
            except RealSpeechUnavailableError as err:
                if not quiet:
                    work.log(f"skipping the real split: {err}")
        else:
            raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    return train, evals
