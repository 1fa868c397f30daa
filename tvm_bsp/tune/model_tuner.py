"""Tune the knobs of every recurrent layer of a model for streaming, locally or over RPC.

For each layer, candidate :class:`~tvm_bsp.kernels.rnn_knobs.RNNKnobs` configs
(:func:`~tvm_bsp.tune.layers.rnn_candidates`: the untuned default first, so the best is
never slower than the default, then random configs of
:func:`~tvm_bsp.kernels.rnn_knobs.knob_space`) are compiled as a one-layer model with
:func:`tvm_bsp.compile_model` (its BSPC weights as in the full model), exported as a ``.so``
(cross-compiled for arm64: devices have no compiler), and timed by the shared
:class:`~tvm_bsp.tune.runner.Measurer` (MetaSchedule's ``RPCRunner``): the per-frame
``step(x_t, state)`` of the layer, i.e. the input projection plus one step of the recurrent
kernel, with the device's thread pool sized to the candidate's ``threads``. Every result is
appended to the database under the layer's workload (:mod:`tvm_bsp.records.layers`); configs
already recorded are skipped (resume). Candidates are built in this process: a Relax module
carries its weights, which are costly to ship to a builder worker.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tvm_bsp.records.database import TuningDatabase, config_key, key_of
from tvm_bsp.records.layers import layer_sparse, layer_workload, suggested_knobs
from tvm_bsp.tune.layers import layer_model, rnn_candidates
from tvm_bsp.tune.runner import (
    Measurer,
    TuneResult,
    check_runnable,
    cleanup_artifact,
    format_us,
    parse_tracker,
    result_of,
)

__all__ = ["load_model_source", "tune_model"]


def load_model_source(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """A model file of ``tvm-bsp train`` / ``prune`` and its BSPC weights.

    Parameters
    ----------
    path : path-like
        ``OUT/model.pt`` (with ``OUT/model.json``; BSPC files in ``OUT/bspc/`` if
        ``tvm-bsp prune`` wrote them), or the directory ``OUT``; or a ``.onnx`` file
        (returned as is, with ``"auto"``).

    Returns
    -------
    (torch.nn.Module, bspc)
        The model and the ``bspc`` argument of ``compile_model`` (the BSPC directory, or
        ``"auto"``: weights that are at least half zeros become BSPC).

    Raises
    ------
    FileNotFoundError
        If there is no model file.
    ValueError
        If the file is not a saved model.
    """
    from tvm_bsp.speech.model import load_model

    p = Path(path)
    if p.suffix.lower() == ".onnx":  # tune_model imports it (tvm_bsp.frontend.dispatch)
        if not p.is_file():
            raise FileNotFoundError(f"model file {p} not found")
        return p, "auto"
    if p.is_dir():
        p = p / "model.pt"
    model, _extra = load_model(p)
    bspc_dir = p.parent / "bspc"
    return model, (str(bspc_dir) if (bspc_dir / "index.json").is_file() else "auto")


def _target_and_export(target: Any) -> tuple[Any, Callable[[Any, str], Any]]:
    """The target and how to link a candidate: a named deploy target (``android-arm64``:
    the NDK compiler of ``TVM_NDK_CC``) through :mod:`tvm_bsp.deploy.targets`, anything
    else through ``CompiledModel.export`` (GNU cross compiler for arm64)."""
    from tvm_bsp.kernels.targets import TARGET_NAMES, resolve_target

    if isinstance(target, str) and target not in TARGET_NAMES:
        try:
            from tvm_bsp.deploy.targets import DEPLOY_TARGETS, export_library
        except ImportError:  # pragma: no cover - deploy targets not installed
            DEPLOY_TARGETS, export_library = {}, None
        if target in DEPLOY_TARGETS:
            named = DEPLOY_TARGETS[target]
            named.check_compiler()
            return named.target(), lambda cm, path: export_library(cm.executable, target, path)
    return resolve_target(target), lambda cm, path: cm.export(path)


def tune_model(
    module: Any,
    db: TuningDatabase | str | os.PathLike[str],
    *,
    bspc: Any = "auto",
    grid: Any = None,
    target: Any = "host",
    knobs: Mapping[str, Any] | None = None,
    trials: int = 8,
    tracker: tuple[str, int] | str | None = None,
    key: str | None = None,
    seed: int = 0,
    number: int = 50,
    repeat: int = 5,
    min_repeat_ms: int = 20,
    session_timeout: float = 120.0,
    max_failures: int = 3,
    callback: Callable[[dict[str, Any], int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, TuneResult]:
    """Tune the knobs of every recurrent layer of a model; record every measurement.

    Parameters
    ----------
    module : torch.nn.Module, RNNModel, onnx.ModelProto or ``.onnx`` path
        As :func:`tvm_bsp.compile_model` takes it.
    db : TuningDatabase or path-like
        Database directory; records are appended after every candidate.
    bspc, grid : optional
        Which weights are BSPC, as for ``compile_model`` (default ``"auto"``).
    target : str, dict or tvm.target.Target
        ``"host"``, ``"arm64"`` or another ``llvm`` target.
    knobs : mapping, optional
        Overrides of the defaults (the first candidate), as ``compile_model(knobs=...)``.
    trials : int
        Candidate configs per layer (measured or already in the database).
    tracker : (host, port) or "HOST:PORT", optional
        RPC tracker; with ``key``, candidates run on that device, else in this process.
    key : str, optional
    seed : int
        Seed of the random candidates and of the input frame.
    number, repeat, min_repeat_ms : int
        ``time_evaluator`` settings.
    session_timeout : float
    max_failures : int
        Consecutive failed measurements after which tuning stops with ``TuningError``.
    callback, log : callable, optional
        ``callback(record, records_in_db)`` after each write; progress messages.

    Returns
    -------
    dict
        ``{weight_hh parameter name: TuneResult}`` per layer.

    Raises
    ------
    TuningError
        The device left the tracker (the message names the key and the records kept), or
        measurements kept failing.
    ValueError
        For bad arguments (a tracker without key, a target this machine cannot run).
    """
    from tvm_bsp.compiler.bspc_sources import resolve_bspc
    from tvm_bsp.compiler.model import compile_model
    from tvm_bsp.frontend.dispatch import import_model

    if trials < 1:
        raise ValueError(f"trials must be positive, got {trials}")
    say = log or (lambda _msg: None)
    db = db if isinstance(db, TuningDatabase) else TuningDatabase(db)
    tgt, export = _target_and_export(target)
    if tgt.kind.name != "llvm":
        raise ValueError(
            f"the RNN layer kernels have CPU (llvm) templates only; cannot tune them for {tgt}"
        )
    peer = parse_tracker(tracker)
    check_runnable(tgt, peer is not None, key)
    desc = import_model(module)
    sparse = resolve_bspc(desc, bspc, grid)
    suggested = suggested_knobs(desc, sparse, tgt)
    rng = np.random.default_rng(seed)
    results: dict[str, TuneResult] = {}
    for _, index, layer in desc.directions():  # both halves of a bidirectional layer
        name = layer.name("weight_hh", index)
        wl = layer_workload(layer, sparse, tgt)
        wkey = key_of(wl)
        sub, sub_sparse = layer_model(layer), layer_sparse(layer, sparse)
        # the first candidate is what compile_model uses for this layer without records
        first = {**suggested.get(name, {}), **(knobs or {})}
        candidates = rnn_candidates(tgt, trials, seed, first)
        done = {config_key(r["config"]) for r in db.records(wkey)}
        todo = [c for c in candidates if config_key(c) not in done]
        say(
            f"layer {index} ({name}, {layer.cell} {layer.input_size}->{layer.hidden_size}, "
            f"{len(sub_sparse)} BSPC): {len(candidates)} candidates, "
            f"{len(candidates) - len(todo)} already in {db.file(wkey)}"
        )
        H = layer.hidden_size
        state_shape = (1, 2, 1, H) if layer.cell == "lstm" else (1, 1, H)
        arrays = [
            rng.standard_normal((1, layer.input_size)).astype(np.float32),
            np.zeros(state_shape, np.float32),
        ]
        measurer = Measurer(
            db, wl, wkey, tgt, tracker=peer, key=key, number=number, repeat=repeat,
            min_repeat_ms=min_repeat_ms, session_timeout=session_timeout,
            max_failures=max_failures, run_evaluator="run_vm_step", callback=callback, log=say,
        )  # fmt: skip
        measured = 0
        try:
            for cfg in todo:
                artifact = os.path.join(
                    tempfile.mkdtemp(prefix="tvm-bsp-tune-"), f"rnn_{uuid.uuid4().hex}.so"
                )
                try:
                    try:
                        compiled = compile_model(sub, tgt, sub_sparse, {name: cfg})
                        export(compiled, artifact)
                    except Exception as err:  # a config the kernels cannot build
                        measurer.record(cfg, None, f"build: {type(err).__name__}: {err}"[-2000:])
                        measured += 1
                        continue
                    ok = measurer.measure(cfg, artifact, arrays, threads=int(cfg["threads"]))
                    measured += int(ok)
                finally:
                    cleanup_artifact(artifact)
        finally:
            measurer.close()
        results[name] = result_of(db, wkey, candidates[0], measured, len(candidates) - len(todo))
        res = results[name]
        say(f"layer {index}: default {format_us(res.default_us)} -> best {format_us(res.best_us)}")
    return results
