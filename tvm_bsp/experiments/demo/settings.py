"""Settings of ``tvm-bsp demo`` (default and ``--quick``) and their cache keys."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tvm_bsp.speech.prune_run import PruneSettings


@dataclass(frozen=True)
class DemoSettings:
    """What the demo trains, prunes and compiles.

    Attributes
    ----------
    sizes : (int, int, int)
        Train, dev and test utterances of the synthetic corpus.
    corpus_seed : int
    hidden, layers : int
        The GRU acoustic model (framewise head, 39 MFCC inputs, 39 phone classes).
    epochs : int
        Dense training epochs.
    lr : float
        Adam learning rate of dense training.
    rate : float
        BSP compression of the GRU matrices (RTMobile's column/row split for it).
    prune : PruneSettings
        Grid and ADMM / retraining schedule.
    smooth, min_run : int
        Framewise decoding (:func:`tvm_bsp.speech.train.smoothed_framewise_decode`).
    seed : int
        Training seed.
    """

    sizes: tuple[int, int, int] = (1200, 100, 100)
    corpus_seed: int = 0
    hidden: int = 128
    layers: int = 2
    epochs: int = 4
    lr: float = 3e-3
    rate: float = 10.0
    prune: PruneSettings = field(
        default_factory=lambda: PruneSettings(
            row_blocks=24,
            col_blocks=8,
            input_col_blocks=4,
            admm_epochs=2,
            retrain_epochs=4,
            utts_per_epoch=400,
        )
    )
    smooth: int = 7
    min_run: int = 4
    seed: int = 0

    def corpus_name(self) -> str:
        """Folder name of the corpus under the work directory."""
        n_train, n_dev, n_test = self.sizes
        return f"corpus-{n_train}-{n_dev}-{n_test}-s{self.corpus_seed}"

    def dense_key(self) -> str:
        """Digest of everything the dense model depends on."""
        keys = ("sizes", "corpus_seed", "hidden", "layers", "epochs", "lr", "seed")
        return _digest({k: getattr(self, k) for k in keys})

    def pruned_key(self) -> str:
        """Digest of everything the pruned model depends on."""
        return _digest({"dense": self.dense_key(), "rate": self.rate, "prune": asdict(self.prune)})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dictionary."""
        return asdict(self)


def quick_settings() -> DemoSettings:
    """A tiny corpus and model: the whole demo in a few minutes (for tests and smoke runs)."""
    return replace(
        DemoSettings(),
        sizes=(60, 10, 12),
        hidden=32,
        epochs=2,
        prune=PruneSettings(
            row_blocks=6,
            col_blocks=4,
            input_col_blocks=4,
            admm_epochs=1,
            retrain_epochs=1,
            utts_per_epoch=30,
        ),
        smooth=5,
        min_run=3,
    )


def _digest(data: dict[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
