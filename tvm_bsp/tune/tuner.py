"""Knob search for the BSPC kernel with MetaSchedule's builder and runner, locally or over RPC.

The kernel is the target's mat-mat kernel (:mod:`tvm_bsp.kernels.matmat`), the one
``compile_model`` ships for input projections and dense heads, so a tuned config is a set of
layer knobs it accepts. Why not ``ms.tune_tir`` with ``sample_categorical`` decisions: every
knob is baked into the generated kernel, and several (``lanes``, the ``k_split`` padding of
the panels, ``threads``) change the packed layout, i.e. the arrays the PrimFunc takes. A
MetaSchedule trace transforms one fixed PrimFunc, so it cannot express them. This tuner is the
successor of an AutoTVM template tuner instead: the search space is the template's knobs, each
candidate config is its own PrimFunc + packed arrays, built by ``ms.builder.LocalBuilder``
(``f_build`` = :func:`tvm.compile`, ``.so`` export, the aarch64 cross compiler for arm64) and
measured by ``ms.runner.RPCRunner`` (tracker + device key, or an in-process
:class:`tvm.rpc.LocalSession` without a tracker) whose ``f_alloc_argument`` uploads the
candidate's real packed arrays.

Order of the candidates: the config ``build_spmm`` uses without a tuned config (the defaults
``compile_model`` takes for this matrix) first, so the result is never worse than the untuned
kernel; then the target's defaults; then distinct random configs. Every measured candidate is
appended to the database at once; configs already in the database are skipped (resume).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.records.database import TuningDatabase, config_key, workload, workload_key
from tvm_bsp.tune import measure
from tvm_bsp.tune.runner import (
    Measurer,
    TuneResult,
    TuningError,
    arm_export,
    check_runnable,
    cleanup_artifact,
    parse_tracker,
    result_of,
)

__all__ = ["TuneResult", "TuningError", "candidate_configs", "tune_spmm"]


def candidate_configs(
    bspc: BSPCMatrix, batch: int, target: Any, trials: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Up to ``trials`` distinct full configs: untuned choice, target defaults, random.

    Parameters
    ----------
    bspc : BSPCMatrix
    batch : int
    target : str, dict or tvm.target.Target
    trials : int
    seed : int
        Seed of the random part.

    Returns
    -------
    list of dict
        Full configs of ``spmm_template(target).knobs(batch, bspc)``, the untuned choice
        first.
    """
    from tvm_bsp.kernels.matmat import spmm_template
    from tvm_bsp.kernels.targets import resolve_target

    template = spmm_template(resolve_target(target))
    knobs = template.knobs(batch, bspc)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(cfg: dict[str, Any]) -> None:
        k = config_key(cfg)
        if k not in seen and len(out) < trials:
            seen.add(k)
            out.append(cfg)

    add(template.config(batch, None, bspc))
    add(template.config(batch))
    rng = random.Random(seed)
    space = 1
    for knob in knobs:
        space *= len(knob.choices)
    attempts = 0
    while len(out) < min(trials, space) and attempts < 50 * trials:
        attempts += 1
        add({k.name: rng.choice(k.choices) for k in knobs})
    return out


def _kernel_arguments(spec: Any, batch: int, shape: tuple[int, int], seed: int) -> list[np.ndarray]:
    """The kernel's arguments in parameter order: random ``x``, packed arrays, zero ``y``."""
    rng = np.random.default_rng(seed)
    M, N = shape
    arrays = [np.ascontiguousarray(spec.arrays[n]) for n in spec.arg_names[1:-1]]
    return [
        rng.standard_normal((batch, N)).astype(np.float32),
        *arrays,
        np.zeros((batch, M), np.float32),
    ]


def tune_spmm(
    bspc: BSPCMatrix,
    db: TuningDatabase | str | os.PathLike[str],
    *,
    batch: int = 1,
    target: Any = "host",
    epilogue: str | None = None,
    trials: int = 16,
    tracker: tuple[str, int] | str | None = None,
    key: str | None = None,
    seed: int = 0,
    number: int = 20,
    repeat: int = 5,
    min_repeat_ms: int = 20,
    session_timeout: float = 120.0,
    build_chunk: int = 4,
    max_failures: int = 3,
    callback: Callable[[dict[str, Any], int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> TuneResult:
    """Tune the knobs of the BSPC kernel for one workload and record every measurement.

    Parameters
    ----------
    bspc : BSPCMatrix
        The weight (its structure defines the workload).
    db : TuningDatabase or path-like
        Database directory; records are appended after every candidate.
    batch : int
        Frames per call.
    target : str, dict or tvm.target.Target
        ``"host"``, ``"arm64"``, ... (:func:`tvm_bsp.kernels.targets.resolve_target`).
    epilogue : {None, "none", "sigmoid", "tanh"}
    trials : int
        Candidate configs of this search (measured or already in the database).
    tracker : (host, port) or "HOST:PORT", optional
        RPC tracker; with ``key``, candidates run on that device. Without, they run in this
        machine's :class:`tvm.rpc.LocalSession` (host targets only).
    key : str, optional
        Device key registered with the tracker.
    seed : int
        Seed of the random candidates and of ``x``.
    number, repeat, min_repeat_ms : int
        ``time_evaluator`` settings; the record keeps the ``repeat`` values.
    session_timeout : float
        Seconds a measurement (session + upload + run) may take.
    build_chunk : int
        Candidates compiled per builder call (one popen pool per call).
    max_failures : int
        Consecutive failed measurements after which tuning stops with :class:`TuningError`.
    callback : callable, optional
        ``callback(record, records_in_db)`` after each record is written.
    log : callable, optional
        Progress messages (e.g. ``print``).

    Returns
    -------
    TuneResult

    Raises
    ------
    TuningError
        The device left the tracker, or ``max_failures`` measurements in a row failed; the
        message names the key and the number of records kept.
    """
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from tvm_bsp.kernels.build import SPMM_ENTRY, spmm_prim_func
    from tvm_bsp.kernels.targets import resolve_target

    say = log or (lambda _msg: None)
    db = db if isinstance(db, TuningDatabase) else TuningDatabase(db)
    tgt = resolve_target(target)
    wl = workload(bspc, batch, target, epilogue)
    wkey = workload_key(bspc, batch, target, epilogue)
    tracker = parse_tracker(tracker)
    check_runnable(tgt, tracker is not None, key)

    candidates = candidate_configs(bspc, batch, target, trials, seed)
    default_cfg = candidates[0]
    done = {config_key(r["config"]) for r in db.records(wkey)}
    todo = [c for c in candidates if config_key(c) not in done]
    skipped = len(candidates) - len(todo)
    say(f"workload {wkey}: {len(candidates)} candidates, {skipped} already in {db.file(wkey)}")

    builder = ms.builder.LocalBuilder(
        f_build=measure.build,
        f_export=measure.export_arm64 if arm_export(tgt) else measure.export_host,
        max_workers=1,
        timeout_sec=max(60.0, session_timeout),
    )
    measurer = Measurer(
        db, wl, wkey, tgt, tracker=tracker, key=key, number=number, repeat=repeat,
        min_repeat_ms=min_repeat_ms, session_timeout=session_timeout,
        max_failures=max_failures, callback=callback, log=say,
    )  # fmt: skip

    measured = 0
    try:
        for start in range(0, len(todo), max(1, build_chunk)):
            chunk = todo[start : start + max(1, build_chunk)]
            specs = [spmm_prim_func(bspc, batch, c, epilogue, None, tgt) for c in chunk]
            inputs = [
                ms.builder.BuilderInput(tvm.IRModule({SPMM_ENTRY: s.func}), tgt) for s in specs
            ]
            built = builder.build(inputs)
            try:
                for cfg, spec, res in zip(chunk, specs, built, strict=True):
                    if res.error_msg:
                        measurer.record(cfg, None, "build: " + str(res.error_msg).strip()[-2000:])
                        measured += 1
                        continue
                    path = str(res.artifact_path)
                    try:
                        args = _kernel_arguments(spec, batch, bspc.shape, seed)
                        ok = measurer.measure(cfg, path, args)
                    finally:
                        cleanup_artifact(path)
                    measured += int(ok)
            finally:  # candidates of the chunk left unmeasured by an error
                for res in built:
                    if not res.error_msg and res.artifact_path:
                        cleanup_artifact(str(res.artifact_path))
    finally:
        measurer.close()
    return result_of(db, wkey, default_cfg, measured, skipped)


def summarize(result: TuneResult) -> Mapping[str, Any]:
    """A JSON-friendly summary of a :class:`TuneResult`."""
    return {
        "workload": result.workload_key,
        "db_file": str(result.db_file),
        "default_us": result.default_us,
        "best_us": result.best_us,
        "speedup": result.speedup,
        "best_config": result.best_config,
        "measured": result.measured,
        "skipped": result.skipped,
    }
