"""The dense model of a Table I run: training (resumable), decoding choice, evaluation."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from tvm_bsp.experiments.table1.config import ExperimentConfig, dense_settings_differ
from tvm_bsp.experiments.table1.work import Work, write_json
from tvm_bsp.speech.model import AcousticModel, load_model, save_model
from tvm_bsp.speech.precision import resolve_bf16
from tvm_bsp.speech.train import UtteranceLike, evaluate_per, train_model
from tvm_bsp.speech.train_state import load_train_state


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


def adopt_dense(work: Work, config: ExperimentConfig, source: str | os.PathLike) -> bool:
    """Install a shipped dense model (:mod:`tvm_bsp.experiments.table1.ship`) as the
    run's dense model.

    Does nothing (returns False) when the work directory already has a dense model.

    Raises
    ------
    ValueError
        If the shipped model was trained with other settings than ``config``'s.
    """
    from tvm_bsp.speech.pretrained import load_pretrained

    ddir = work.root / "dense"
    if (ddir / "model.pt").exists() and (ddir / "eval.json").exists():
        return False
    model, _, info = load_pretrained(source)
    diff = dense_settings_differ(config, info.get("settings"))
    if diff:
        raise ValueError(
            f"the shipped dense model {source} was trained with other settings (differing: "
            f"{', '.join(diff)}); train one with --from-scratch"
        )
    save_model(model, ddir / "model.pt", extra={"per": info["eval"]["per"], "source": str(source)})
    write_json(ddir / "eval.json", info["eval"])
    work.log(f"dense model: the shipped {source}")
    return True


def train_dense(
    work: Work,
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
    ckpt = ddir / "train.safetensors"
    done_before = 0
    if ckpt.exists():
        done_before = load_train_state(ckpt, AcousticModel(config.model), None).epoch + 1
    t0 = time.time()
    bf16 = resolve_bf16(config.bf16)

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
        chunks=config.chunks,
        bf16=bf16,
    )
    wall = time.time() - t0
    if history and all("train_s" in h for h in history):
        wall = sum(h["train_s"] for h in history)  # over every session of a resumed run
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
        "bf16": bf16,
    }
    save_model(model, model_path, extra={"per": per})
    write_json(eval_path, record)
    work.log(f"dense PER: {format_per(per)} ({wall:.0f} s)")
    return model, record, max(0, config.dense_epochs - done_before)


def _gru_size(model: AcousticModel) -> int:
    from tvm_bsp.speech.prune_run import gru_weight_names

    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in gru_weight_names(model))


def format_per(per: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}%" for k, v in per.items())
