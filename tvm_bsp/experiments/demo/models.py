"""The demo's torch half: corpus, dense GRU, BSP-pruned GRU, each cached in the work folder.

Layout of the work folder (``.cache/demo`` by default)::

    corpus-<train>-<dev>-<test>-s<seed>/   the synthetic corpus (generate_corpus)
    dense-<key>.pt / .json                 the trained dense model (+ .pt.ckpt while training)
    bsp<rate>-<key>/model.pt, bspc/        the pruned model and its BSPC export

``<key>`` digests the settings a step depends on (:class:`DemoSettings`), so a second run with
the same settings reuses everything, and other settings never pick up a stale model.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tvm_bsp.experiments.demo.settings import DemoSettings

Log = Callable[[str], Any]


def dense_path(work: Path, settings: DemoSettings) -> Path:
    """Where the dense model of these settings is (``.pt``; its ``.json`` beside it)."""
    return work / f"dense-{settings.dense_key()}.pt"


def pruned_dir(work: Path, settings: DemoSettings) -> Path:
    """Directory of the pruned model of these settings (``model.pt``, ``bspc/``)."""
    return work / f"bsp{settings.rate:g}-{settings.pruned_key()}"


def load_corpus(work: Path, settings: DemoSettings, progress: bool, log: Log) -> dict[str, list]:
    """Generate (or reuse) the corpus and load its three splits."""
    from tvm_bsp.speech.corpus import generate_corpus, load_split

    root = work / settings.corpus_name()
    log(f"corpus {root} ({'/'.join(map(str, settings.sizes))} train/dev/test utterances)")
    generate_corpus(root, *settings.sizes, seed=settings.corpus_seed, progress=progress)
    data = {split: load_split(root, split) for split in ("train", "dev", "test")}
    if not data["train"] or not data["test"]:
        raise ValueError(f"corpus {root} needs training and test utterances")
    return data


def dense_model(
    work: Path, settings: DemoSettings, data: dict[str, list], progress: bool, log: Log
) -> Any:
    """Train the dense GRU (resumable), or load it when a run with these settings made it."""
    import torch

    from tvm_bsp.speech.model import AcousticModel, ModelConfig, load_model, save_model
    from tvm_bsp.speech.train import train_model

    path = dense_path(work, settings)
    if path.exists() and path.with_suffix(".json").exists():
        log(f"dense model: reusing {path}")
        return load_model(path)[0]
    config = ModelConfig(cell="gru", hidden=settings.hidden, layers=settings.layers)
    torch.manual_seed(settings.seed)
    model = AcousticModel(config)
    log(f"training a {settings.layers}x{settings.hidden} GRU for {settings.epochs} epochs")
    ckpt = Path(str(path) + ".ckpt")
    train_model(
        model,
        data["train"],
        data["dev"] or data["train"][:20],
        epochs=settings.epochs,
        lr=settings.lr,
        seed=settings.seed,
        checkpoint=ckpt,
        progress=progress,
        log=log,
    )
    save_model(model, path, extra={"settings": settings.to_dict()})
    ckpt.unlink(missing_ok=True)
    model.eval()
    return model


def pruned_model(
    work: Path,
    settings: DemoSettings,
    dense: Any,
    data: dict[str, list],
    progress: bool,
    log: Log,
) -> tuple[Any, Path, float]:
    """BSP-prune the dense model (ADMM + masked retraining), or reuse a cached result.

    Returns
    -------
    (AcousticModel, pathlib.Path, float)
        The pruned model, its BSPC directory, the achieved compression of the GRU matrices.
    """
    import json

    from tvm_bsp.prune import export_bspc
    from tvm_bsp.speech.model import load_model, save_model
    from tvm_bsp.speech.prune_run import prune_model

    out = pruned_dir(work, settings)
    done = out / "result.json"
    if done.exists():
        log(f"pruned model: reusing {out}")
        model, _ = load_model(out / "model.pt")
        return model, out / "bspc", float(json.loads(done.read_text())["achieved_rate"])
    log(f"BSP-pruning the GRU matrices to {settings.rate:g}x (ADMM, then masked retraining)")
    result = prune_model(
        dense,
        data["train"],
        "bsp",
        settings.rate,
        settings.prune,
        checkpoint_dir=out / "admm",
        progress=progress,
        log=log,
    )
    bspc = out / "bspc"
    if bspc.exists():
        shutil.rmtree(bspc)
    export_bspc(result.model, result.pruner, bspc)
    save_model(result.model, out / "model.pt", extra={"achieved_rate": result.achieved_rate})
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps({"achieved_rate": result.achieved_rate, "kept": result.kept}))
    tmp.replace(done)  # written last: marks the cached result complete
    result.model.eval()
    return result.model, bspc, float(result.achieved_rate)
