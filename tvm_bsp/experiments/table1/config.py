"""Settings of the Table I experiment (:mod:`tvm_bsp.experiments.table1.run`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tvm_bsp.speech.batching import ChunkSettings
from tvm_bsp.speech.model import ModelConfig
from tvm_bsp.speech.prune_run import METHODS, PruneSettings, without_method_fields

SPLITS = ("test", "dev", "real")
PAPER_RATES = (10, 19, 29, 43, 80, 103)
TABLE1_PRUNE = PruneSettings(
    row_blocks=192,
    admm_epochs=2,
    retrain_epochs=24,
    first_retrain_epochs=48,
    distill_weight=0.7,
    chunk_frames=100,
    bf16="auto",
)
"""Pruning schedule of the default Table I run: per row 2 ADMM + 24 retraining units of 350
utterances (48 for the first row of a chain, pruned from the dense model), distillation from
the dense model, BSP grid 192 x 16 (stripes of 8 of the 2x512 model's 1536 gate rows: two NEON
float32x4 vectors per stripe on the phone).

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
    chunks : ChunkSettings or None
        Dense training on chunks of frames (:mod:`tvm_bsp.speech.batching`); ``None``: whole
        utterances.
    bf16 : bool or "auto"
        bfloat16 autocast of the training forward passes (:mod:`tvm_bsp.speech.precision`;
        ``"auto"``: where the CPU has native bf16). Scoring is always float32.
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
        default_factory=lambda: ModelConfig(
            cell="gru", hidden=512, layers=2, head="framewise", dropout=0.2
        )
    )
    dense_epochs: int = 30
    chunks: ChunkSettings | None = field(default_factory=ChunkSettings)
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
    bf16: bool | str = "auto"

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


#: Settings of :meth:`ExperimentConfig.core` that the dense model does not depend on.
PRUNING_ONLY_SETTINGS = ("prune", "gradual")


def dense_settings(core: dict[str, Any]) -> dict[str, Any]:
    """The part of a :meth:`ExperimentConfig.core` dictionary the dense model depends on.

    A shipped dense model serves every run that agrees on it, whatever its pruning schedule.
    """
    return {k: v for k, v in core.items() if k not in PRUNING_ONLY_SETTINGS}


def dense_settings_differ(config: ExperimentConfig, recorded: dict[str, Any] | None) -> list[str]:
    """The keys of :func:`dense_settings` in which ``recorded`` (a shipped model's
    ``info["settings"]``) differs from ``config``; empty when the dense model serves it."""
    want = dense_settings(json.loads(json.dumps(config.core())))
    had = dense_settings(recorded or {})
    return sorted(k for k in set(had) | set(want) if had.get(k) != want.get(k))


def settings_digest(config: ExperimentConfig) -> str:
    """Short hash of :meth:`ExperimentConfig.core` (recorded in the results)."""
    text = json.dumps(config.core(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


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
