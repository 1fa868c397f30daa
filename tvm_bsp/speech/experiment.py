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

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from tvm_bsp.speech.model import AcousticModel, ModelConfig, load_model, save_model
from tvm_bsp.speech.prune_run import (
    METHODS,
    PruneSettings,
    paper_split,
    prune_model,
    without_method_fields,
)
from tvm_bsp.speech.storage import atomic_write_text
from tvm_bsp.speech.train import UtteranceLike, evaluate_per, train_model

SPLITS = ("test", "dev", "real")
PAPER_RATES = (10, 19, 29, 43, 80, 103)
TABLE1_PRUNE = PruneSettings(row_blocks=192, admm_epochs=2, retrain_epochs=24, distill_weight=0.7)
"""Pruning schedule of the default Table I run: per row 2 ADMM + 24 retraining units of 350
utterances, distillation from the dense model, BSP grid 192 x 16 (stripes of 4 rows: one NEON
float32x4 vector per stripe on the phone).

A/B runs on 10x BSP from the dense model, PER on the first 150 dev utterances (dense 43.0):
2 + 6 units without distillation 64.5 %, with distillation 62.9 %, 2 + 12 units with
distillation 56.6 %; 8 ADMM + 6 retraining units with a growing rho 63.1 %. Then the grid, 2 + 12
units: 24 x 16 (32-row stripes) 56.6 %, 96 x 16 (8 rows) 52.0 %, 192 x 16 (4 rows) 50.0 %,
384 x 16 (2 rows) 47.8 %; unstructured magnitude pruning 47.8 %. 384 x 16 with 2 + 24 units:
46.1 %. Whole Table I runs, test PER with 12 and 24 retraining units: BSP 10x 44.55 / 41.75 %,
magnitude 10x 42.85 / 41.00 %."""


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of the Table I experiment (defaults: the 2-core, under-two-hours run).

    Attributes
    ----------
    n_train, n_dev, n_test, corpus_seed : int
        Synthetic corpus sizes (dev/test: held-out voices and words).
    model : ModelConfig
        Acoustic model.
    dense_epochs : int
        Dense training epochs (full passes over the training split).
    dense_lr : float
        Adam learning rate (cosine decay).
    max_frames : int
        Padded frames per batch.
    rates : tuple of float
        Target compressions of the GRU matrices.
    methods : tuple of str
        Subset of ``("bsp", "magnitude", "balanced")``.
    prune : PruneSettings
        Grid and schedule of every pruning run.
    splits : tuple of str
        Evaluation splits: ``"test"``, ``"dev"``, ``"real"`` (the recordings of
        :func:`~tvm_bsp.speech.real.load_real_utterances`, skipped if not installed).
    smooth, min_run : int
        Framewise decoding (:func:`~tvm_bsp.speech.train.smoothed_framewise_decode`), used
        when ``decode_grid`` is empty.
    decode_grid : tuple of (smooth, min_run)
        Candidates tried on the dev split with the dense model; the best is used for every
        model and split (recorded as ``dense["decode"]``).
    seed : int
    gradual : bool
        Chain the rates of each method (module docstring); ``False``: every row starts from
        the dense model.
    """

    n_train: int = 4000
    n_dev: int = 400
    n_test: int = 400
    corpus_seed: int = 0
    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(cell="gru", hidden=256, layers=2, head="framewise")
    )
    dense_epochs: int = 5
    dense_lr: float = 2e-3
    max_frames: int = 12000
    rates: tuple[float, ...] = PAPER_RATES
    methods: tuple[str, ...] = METHODS
    prune: PruneSettings = field(default_factory=lambda: TABLE1_PRUNE)
    splits: tuple[str, ...] = SPLITS
    smooth: int = 7
    min_run: int = 4
    decode_grid: tuple[tuple[int, int], ...] = ((3, 2), (5, 3), (7, 4), (9, 5), (11, 6))
    seed: int = 0
    gradual: bool = True

    def core(self) -> dict[str, Any]:
        """The settings every finished step depends on.

        Everything but rates, methods, splits and the method-specific pruning fields
        (:data:`~tvm_bsp.speech.prune_run.METHOD_FIELDS`, e.g. the BSP grid): a finished row
        records those itself and only that method's rows depend on them.
        """
        data = asdict(self)
        for key in ("rates", "methods", "splits"):
            data.pop(key)
        data["prune"] = without_method_fields(data["prune"])
        return data

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dictionary."""
        data = asdict(self)
        data["rates"] = list(self.rates)
        data["methods"] = list(self.methods)
        data["splits"] = list(self.splits)
        return data


def quick_config() -> ExperimentConfig:
    """A few-minute smoke run: tiny corpus, tiny model, two rates."""
    return ExperimentConfig(
        n_train=160,
        n_dev=30,
        n_test=30,
        model=ModelConfig(cell="gru", hidden=48, layers=2, head="framewise"),
        dense_epochs=4,
        rates=(10, 29),
        prune=PruneSettings(
            row_blocks=6,
            col_blocks=4,
            input_col_blocks=4,
            balanced_groups=8,
            admm_epochs=2,
            retrain_epochs=2,
            utts_per_epoch=80,
            distill_weight=0.7,
        ),
        smooth=5,
        min_run=3,
    )


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
        Rows found finished.
    wall_s : float
    """

    records: list[dict[str, Any]]
    dense: dict[str, Any]
    trained_epochs: int = 0
    skipped_rows: list[str] = field(default_factory=list)
    wall_s: float = 0.0

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


class _Work:
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


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _check_settings(work: _Work, config: ExperimentConfig) -> None:
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
        _write_json(path, core)


def _check_row_settings(rdir: Path, row: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Refuse a finished row made with other method-specific settings (e.g. another grid)."""
    had = {k: row.get("prune", {}).get(k) for k in wanted}
    if had != wanted:
        diff = ", ".join(f"{k} {had[k]!r} -> {wanted[k]!r}" for k in wanted if had[k] != wanted[k])
        raise ValueError(
            f"{rdir} was pruned with other settings ({diff}); delete the rows of method "
            f"{row.get('method')!r} (rows/{row.get('method')}-*) to rerun them, or use another "
            "work directory"
        )


def settings_digest(config: ExperimentConfig) -> str:
    """Short hash of :meth:`ExperimentConfig.core` (recorded in the results)."""
    text = json.dumps(config.core(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_data(
    work: _Work,
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


def evaluate(
    model: AcousticModel, evals: dict[str, Sequence[UtteranceLike]], decode: dict[str, int]
) -> dict[str, float]:
    """PER (percent) of ``model`` on every evaluation split with decoding settings ``decode``."""
    return {split: evaluate_per(model, utts, **decode) for split, utts in evals.items()}


def choose_decoding(
    model: AcousticModel, dev: Sequence[UtteranceLike], config: ExperimentConfig
) -> tuple[dict[str, int], dict[str, float]]:
    """Pick ``(smooth, min_run)`` from ``config.decode_grid`` by dev PER (CTC: no choice)."""
    default = {"smooth": config.smooth, "min_run": config.min_run}
    if model.config.head != "framewise" or not config.decode_grid or not dev:
        return default, {}
    scores = {
        f"{s},{r}": evaluate_per(model, dev, smooth=s, min_run=r) for s, r in config.decode_grid
    }
    best = min(scores, key=scores.__getitem__)
    s, r = (int(v) for v in best.split(","))
    return {"smooth": s, "min_run": r}, scores


def train_dense(
    work: _Work,
    config: ExperimentConfig,
    train: Sequence[UtteranceLike],
    evals: dict[str, Sequence[UtteranceLike]],
    progress: bool,
) -> tuple[AcousticModel, dict[str, Any], int]:
    """Train (or resume, or load) the dense model; return it, its eval record, epochs run."""
    ddir = work.root / "dense"
    model_path, eval_path = ddir / "model.pt", ddir / "eval.json"
    if model_path.exists() and eval_path.exists():
        model, _ = load_model(model_path)
        work.log("dense model found: skipping dense training")
        return model, json.loads(eval_path.read_text()), 0
    ddir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model = AcousticModel(config.model)
    dev = evals.get("dev") or list(train[: max(1, len(train) // 10)])
    ckpt = ddir / "train.pt"
    done_before = 0
    if ckpt.exists():
        from tvm_bsp.prune.checkpoint import load_checkpoint

        done_before = load_checkpoint(ckpt, AcousticModel(config.model)).epoch + 1
    t0 = time.time()

    def log(line: str) -> None:
        work.log(f"dense {line}")
        work.event(kind="dense_epoch", line=line)

    history = train_model(
        model,
        train,
        dev,
        epochs=config.dense_epochs,
        lr=config.dense_lr,
        seed=config.seed,
        max_frames=config.max_frames,
        checkpoint=ckpt,
        progress=progress,
        log=log,
    )
    wall = time.time() - t0
    decode, tried = choose_decoding(model, evals.get("dev", dev), config)
    work.log(f"decoding {decode} (dev PER per candidate: {tried})")
    per = evaluate(model, evals, decode)
    record = {
        "per": per,
        "decode": decode,
        "decode_dev_per": tried,
        "history": history,
        "train_wall_s": wall,
        "params": _gru_size(model),
    }
    save_model(model, model_path, extra={"per": per})
    _write_json(eval_path, record)
    work.log(f"dense PER: {_fmt(per)} ({wall:.0f} s)")
    return model, record, max(0, config.dense_epochs - done_before)


def _gru_size(model: AcousticModel) -> int:
    from tvm_bsp.speech.prune_run import gru_weight_names

    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in gru_weight_names(model))


def _fmt(per: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}%" for k, v in per.items())


@dataclass
class RowContext:
    """What every row of a run shares: the work directory, settings, data and dense model.

    Attributes
    ----------
    work : _Work
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
    """

    work: _Work
    config: ExperimentConfig
    dense: AcousticModel
    train: Sequence[UtteranceLike]
    evals: dict[str, Sequence[UtteranceLike]]
    decode: dict[str, int]
    progress: bool


def run_row(
    ctx: RowContext,
    method: str,
    rate: float,
    start: AcousticModel | None = None,
    start_from: str = "dense",
) -> tuple[dict[str, Any], int]:
    """Prune, retrain, evaluate and save one row; return its result and the units trained.

    ``start`` (default ``ctx.dense``) is the model the row prunes, named ``start_from`` in the
    result; ``ctx.dense`` stays the distillation teacher.
    """
    from tvm_bsp.prune import export_bspc
    from tvm_bsp.prune.config import spec_to_dict

    work, config, dense, evals = ctx.work, ctx.config, ctx.dense, ctx.evals

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
        config.prune,
        checkpoint_dir=rdir / "admm",
        progress=ctx.progress,
        log=log,
        teacher=dense,
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
        "prune": config.prune.to_dict(),
        "bspc_dir": bspc,
        "start_from": start_from,
        "history": [
            {"epoch": h["epoch"], "phase": h["phase"], "loss": h["metrics"].get("loss")}
            for h in out.history
        ],
        "wall_s": time.time() - t0,
    }
    save_model(out.model, rdir / "model.pt", extra={"per": per, "rate": out.achieved_rate})
    _write_json(rdir / "result.json", result)
    work.log(
        f"{method} {rate:g}x: achieved {out.achieved_rate:.2f}x, PER {_fmt(per)} "
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
            _check_row_settings(rdir, row, config.prune.method_dict(method))
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
                _write_json(done, row)
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
    work = _Work(root, print if echo else None)
    train, evals = load_data(work, config, False, corpus_dir, quiet=True)
    dense, _ = load_model(work.root / "dense" / "model.pt")
    decode = json.loads((work.root / "dense" / "eval.json").read_text())["decode"]
    ctx = RowContext(work, config, dense, train, evals, decode, progress=False)
    return run_chain(ctx, method)[2]


def _run_chains_in_parallel(
    work: _Work,
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


def run_experiment(
    work_dir: str | os.PathLike,
    config: ExperimentConfig = ExperimentConfig(),
    *,
    corpus_dir: str | os.PathLike | None = None,
    progress: bool = True,
    echo: Callable[[str], Any] | None = print,
    report_only: bool = False,
    jobs: int = 1,
) -> RunSummary:
    """Run (or resume) the whole experiment (module docstring).

    Parameters
    ----------
    work_dir : path-like
        Work directory.
    config : ExperimentConfig
    corpus_dir : path-like, optional
        Use (or generate) the corpus there instead of inside ``work_dir``.
    progress : bool
        Progress bars.
    echo : callable, optional
        Receives the log lines (``print`` by default).
    report_only : bool
        Train nothing: report the finished rows only (needs the finished dense model).
    jobs : int
        Worker processes for the method chains after dense training (each with one torch
        thread; ``1``: everything in this process). The chains are independent, so on a
        2-core machine ``jobs=2`` takes about half the time of ``jobs=1``.

    Returns
    -------
    RunSummary
    """
    for method in config.methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    t0 = time.time()
    work = _Work(work_dir, echo)
    _check_settings(work, config)
    train, evals = load_data(work, config, progress, corpus_dir)
    if report_only and not (work.root / "dense" / "eval.json").exists():
        raise ValueError(f"{work.root} has no finished dense model to report on")
    dense, dense_record, trained = train_dense(work, config, train, evals, progress)
    decode = dense_record["decode"]
    finished_before = {
        f"{m}-{r:g}"
        for m in config.methods
        for r in row_order(config)
        if (work.row_dir(m, r) / "result.json").exists()
    }
    if jobs > 1 and not report_only:
        trained += _run_chains_in_parallel(
            work, config, corpus_dir, jobs, echo is not None, finished_before
        )
    rows, skipped = [], []
    for method in config.methods:
        ctx = RowContext(work, config, dense, train, evals, decode, progress)
        chain_rows, chain_skipped, units = run_chain(ctx, method, report_only)
        rows += chain_rows
        skipped += [name for name in chain_skipped if name in finished_before]
        trained += units
    missing_dense = [s for s in evals if s not in dense_record["per"]]
    if missing_dense:
        sub = {s: evals[s] for s in missing_dense}
        dense_record["per"].update(evaluate(dense, sub, decode))
        _write_json(work.root / "dense" / "eval.json", dense_record)
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
    )
    work.log(f"done: {len(rows)} rows, {trained} epochs trained, {summary.wall_s:.0f} s")
    return summary


def with_overrides(config: ExperimentConfig, **changes: Any) -> ExperimentConfig:
    """``dataclasses.replace`` that also accepts ``prune_<field>`` and ``model_<field>`` keys."""
    prune = {k[6:]: v for k, v in changes.items() if k.startswith("prune_")}
    model = {k[6:]: v for k, v in changes.items() if k.startswith("model_")}
    rest = {k: v for k, v in changes.items() if not k.startswith(("prune_", "model_"))}
    if prune:
        rest["prune"] = replace(config.prune, **prune)
    if model:
        rest["model"] = replace(config.model, **model)
    return replace(config, **rest)
