"""Knob search for the BSPC kernel with MetaSchedule's builder and runner, locally or over RPC.

Why not ``ms.tune_tir`` with ``sample_categorical`` decisions: every knob of the CPU template
is baked into generated TVMScript, and most of them (``panel_rows``, ``k_split * unroll``
padding, ``threads``, ``row_order``) change the packed layout, i.e. the PrimFunc's arguments
and the arrays it needs. A MetaSchedule trace transforms one fixed PrimFunc, so it cannot
express them. This tuner is the successor of an AutoTVM template tuner instead: the search
space is the template's knobs, each candidate config is its own PrimFunc + packed arrays,
built by ``ms.builder.LocalBuilder`` (``f_build`` = :func:`tvm.compile`, ``.so`` export, the
aarch64 cross compiler for arm64) and measured by ``ms.runner.RPCRunner`` (tracker + device
key, or an in-process :class:`tvm.rpc.LocalSession` without a tracker) whose
``f_alloc_argument`` uploads the candidate's real packed arrays.

Order of the candidates: the config ``build_spmm`` uses without a tuned config (the
template's cost-model suggestion) first, so the result is never worse than the untuned
kernel; then the template's static defaults; then distinct random configs. Every measured
candidate is appended to the database at once; configs already in the database are skipped
(resume).
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.tune import measure
from tvm_bsp.tune.database import (
    TuningDatabase,
    config_key,
    utc_now,
    workload,
    workload_key,
)

__all__ = ["TuneResult", "TuningError", "candidate_configs", "tune_spmm"]


class TuningError(RuntimeError):
    """Tuning stopped early (the device left the tracker, or measurements keep failing).

    Attributes
    ----------
    key : str or None
        Device key.
    records_kept : int
        Records of the workload in the database (none is lost).
    db_file : pathlib.Path or None
        The workload's database file.
    """

    def __init__(
        self, message: str, key: str | None, records_kept: int, db_file: Path | None
    ) -> None:
        super().__init__(message)
        self.key = key
        self.records_kept = records_kept
        self.db_file = db_file


@dataclass
class TuneResult:
    """Outcome of :func:`tune_spmm` (over all records of the workload, old and new).

    Attributes
    ----------
    workload_key : str
    db_file : pathlib.Path
    default_config : dict
        What ``build_spmm`` picks without a tuned config (measured first).
    default_us : float or None
        Its median in microseconds.
    best_config : dict or None
    best_us : float or None
    measured : int
        Candidates measured (or failed) in this run.
    skipped : int
        Candidates already in the database.
    records : list of dict
        The workload's records after the run.
    """

    workload_key: str
    db_file: Path
    default_config: dict[str, Any]
    default_us: float | None
    best_config: dict[str, Any] | None
    best_us: float | None
    measured: int = 0
    skipped: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        """``default_us / best_us``."""
        if self.default_us is None or not self.best_us:
            return None
        return self.default_us / self.best_us


def candidate_configs(
    bspc: BSPCMatrix, batch: int, target: Any, trials: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Up to ``trials`` distinct full configs: cost-model choice, static defaults, random.

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
        Full configs of ``spmm_template(target).knobs(batch)``, the untuned choice first.
    """
    from tvm_bsp.schedules import resolve_config, resolve_target, spmm_template

    template = spmm_template(resolve_target(target))
    knobs = template.knobs(batch)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(cfg: dict[str, Any]) -> None:
        k = config_key(cfg)
        if k not in seen and len(out) < trials:
            seen.add(k)
            out.append(cfg)

    add(template.config(batch, None, bspc))
    add(resolve_config(knobs, None))
    rng = random.Random(seed)
    space = 1
    for knob in knobs:
        space *= len(knob.choices)
    attempts = 0
    while len(out) < min(trials, space) and attempts < 50 * trials:
        attempts += 1
        add({k.name: rng.choice(k.choices) for k in knobs})
    return out


def _device_registered(host: str, port: int, key: str) -> bool:
    from tvm.rpc.client import TrackerSession

    try:
        tracker = TrackerSession((host, port))
        try:
            summary = tracker.summary()
        finally:
            tracker.close()
    except (OSError, RuntimeError):
        return False
    return any(s.get("key") == f"server:{key}" for s in summary.get("server_info", []))


def _kernel_arguments(spec: Any, seed: int) -> list[np.ndarray]:
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    rng = np.random.default_rng(seed)
    infos = ArgInfo.from_prim_func(spec.func)
    out = []
    for i, (name, info) in enumerate(zip(spec.arg_names, infos, strict=True)):
        shape = tuple(int(s) for s in info.shape)
        dtype = str(info.dtype)
        if i == 0:
            out.append(rng.standard_normal(shape).astype(dtype))
        elif i == len(infos) - 1:
            out.append(np.zeros(shape, dtype))
        else:
            out.append(np.asarray(spec.arrays[name], dtype=dtype).reshape(shape))
    return out


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
        ``"host"``, ``"arm64"``, ... (:func:`tvm_bsp.schedules.resolve_target`).
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
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from tvm_bsp.ops.build import SPMM_ENTRY, spmm_prim_func
    from tvm_bsp.schedules import resolve_target
    from tvm_bsp.schedules.targets import is_arm

    say = log or (lambda _msg: None)
    db = db if isinstance(db, TuningDatabase) else TuningDatabase(db)
    tgt = resolve_target(target)
    wl = workload(bspc, batch, target, epilogue)
    wkey = workload_key(bspc, batch, target, epilogue)
    db_file = db.file(wkey)
    if isinstance(tracker, str):
        thost, _, tport = tracker.rpartition(":")
        tracker = (thost or "127.0.0.1", int(tport))
    remote = tracker is not None
    if remote and not key:
        raise ValueError("a tracker needs a device key")
    host_cpu = tgt.kind.name == "llvm" and not (is_arm(tgt) and os.uname().machine != "aarch64")
    if not remote and not host_cpu:
        raise ValueError(f"target {tgt} cannot run on this machine: give a tracker and key")

    candidates = candidate_configs(bspc, batch, target, trials, seed)
    default_cfg = candidates[0]
    done = {config_key(r["config"]) for r in db.records(wkey)}
    todo = [c for c in candidates if config_key(c) not in done]
    skipped = len(candidates) - len(todo)
    say(f"workload {wkey}: {len(candidates)} candidates, {skipped} already in {db_file}")

    evaluator = ms.runner.EvaluatorConfig(
        number=number, repeat=repeat, min_repeat_ms=min_repeat_ms, enable_cpu_cache_flush=False
    )
    arm_export = is_arm(tgt.host if tgt.kind.name != "llvm" and tgt.host else tgt)
    builder = ms.builder.LocalBuilder(
        f_build=measure.build,
        f_export=measure.export_arm64 if arm_export else measure.export_host,
        max_workers=1,
        timeout_sec=max(60.0, session_timeout),
    )
    if remote:
        rpc_config = ms.runner.RPCConfig(
            tracker_host=tracker[0],
            tracker_port=int(tracker[1]),
            tracker_key=key,
            session_timeout_sec=session_timeout,
        )
        create_session = None
    else:
        rpc_config = ms.runner.RPCConfig("local", 1, "local", session_timeout_sec=session_timeout)
        create_session = measure.local_session
    runner = ms.runner.RPCRunner(
        rpc_config,
        evaluator,
        f_create_session=create_session,
        f_upload_module=measure.upload_module,
        f_alloc_argument=measure.alloc_arguments,
        f_run_evaluator=measure.run_evaluator,
    )
    device_type = "cpu" if tgt.kind.name == "llvm" else tgt.kind.name
    device_key = key if remote else None

    def record(cfg: dict[str, Any], secs: list[float] | None, error: str | None) -> int:
        us = [s * 1e6 for s in secs] if secs else []
        rec = {
            "config": cfg,
            "median_us": float(np.median(us)) if us else None,
            "measurements_us": us,
            "target": str(tgt),
            "device_key": device_key,
            "time": utc_now(),
            "error": error,
        }
        db.append(wl, rec)
        n = len(db.records(wkey))
        say(f"  {config_key(cfg)}: " + (f"{rec['median_us']:.2f} us" if us else f"failed: {error}"))
        if callback is not None:
            callback(rec, n)
        return n

    def stop(reason: str) -> TuningError:
        n = len(db.records(wkey))
        return TuningError(
            f"{reason}; {n} record(s) of workload {wkey} kept in {db_file}", key, n, db_file
        )

    def measure_one(cfg: dict[str, Any], spec: Any, path: str, failures: int) -> int:
        """Run one built candidate and record it; return the consecutive-failure count."""
        measure.save_arguments(path, _kernel_arguments(spec, seed))
        if remote and not _device_registered(tracker[0], int(tracker[1]), key):
            raise stop(f"device {key!r} is no longer registered with the tracker")
        rin = ms.runner.RunnerInput(path, device_type, ArgInfo.from_prim_func(spec.func))
        t0 = time.monotonic()
        (future,) = runner.run([rin])
        result = future.result()
        error = result.error_msg
        if error:
            if remote and not _device_registered(tracker[0], int(tracker[1]), key):
                raise stop(
                    f"device {key!r} dropped off the tracker while measuring "
                    f"{config_key(cfg)} ({time.monotonic() - t0:.0f} s)"
                )
            failures += 1
            if failures >= max_failures:
                raise stop(
                    f"{failures} measurements in a row failed on "
                    f"{key or 'this machine'!r}; last error: {str(error).strip()[-500:]}"
                )
            # not recorded: a transient failure should be retried by the next run
            say(f"  {config_key(cfg)}: run failed: {str(error).strip()[-300:]}")
            return failures
        record(cfg, [float(s) for s in result.run_secs], None)
        return 0

    measured = 0
    failures = 0
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
                        record(cfg, None, "build: " + str(res.error_msg).strip()[-2000:])
                        measured += 1
                        continue
                    path = str(res.artifact_path)
                    try:
                        failures = measure_one(cfg, spec, path, failures)
                    finally:
                        _cleanup_artifact(path)
                    if failures == 0:
                        measured += 1
            finally:  # candidates of the chunk left unmeasured by an error
                for res in built:
                    if not res.error_msg and res.artifact_path:
                        _cleanup_artifact(str(res.artifact_path))
    finally:
        runner.pool.shutdown()

    records = db.records(wkey)
    default_recs = [
        r
        for r in records
        if config_key(r["config"]) == config_key(default_cfg) and r["median_us"] is not None
    ]
    best = db.best(wkey)
    return TuneResult(
        workload_key=wkey,
        db_file=db_file,
        default_config=default_cfg,
        default_us=min(float(r["median_us"]) for r in default_recs) if default_recs else None,
        best_config=dict(best["config"]) if best else None,
        best_us=float(best["median_us"]) if best else None,
        measured=measured,
        skipped=skipped,
        records=records,
    )


def _cleanup_artifact(path: str) -> None:
    for p in (Path(path), Path(path + measure.ARGS_SUFFIX)):
        p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        Path(path).parent.rmdir()


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
