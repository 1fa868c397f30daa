"""Measuring built candidates with MetaSchedule's ``RPCRunner`` and recording them.

Shared by the BSPC kernel tuner (:func:`tvm_bsp.tune.tune_spmm`) and the RNN layer tuner
(:func:`tvm_bsp.tune.tune_model`): a :class:`Measurer` owns one ``RPCRunner`` (tracker +
device key, or an in-process :class:`tvm.rpc.LocalSession`), runs one exported candidate at a
time with its real arguments, appends every result to the :class:`TuningDatabase` at once,
and stops with :class:`TuningError` (naming the key and the records kept) when the device
leaves the tracker or measurements keep failing.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tvm_bsp.devices.tracker import check_tracker, tracker_problem
from tvm_bsp.records.database import TuningDatabase, config_key, utc_now
from tvm_bsp.tune import measure

__all__ = [
    "Measurer",
    "TuneResult",
    "TuningError",
    "check_runnable",
    "cleanup_artifact",
    "format_us",
    "parse_tracker",
    "result_of",
]


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
    """Outcome of tuning one workload (over all its records, old and new).

    Attributes
    ----------
    workload_key : str
    db_file : pathlib.Path
    default_config : dict
        What the build uses without a tuned config (measured first).
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


def result_of(
    db: TuningDatabase,
    wkey: str,
    default_cfg: Mapping[str, Any],
    measured: int,
    skipped: int,
) -> TuneResult:
    """The :class:`TuneResult` of workload ``wkey`` from the records in ``db``."""
    records = db.records(wkey)
    default_us = [
        float(r["median_us"])
        for r in records
        if config_key(r["config"]) == config_key(default_cfg) and r["median_us"] is not None
    ]
    best = db.best(wkey)
    return TuneResult(
        workload_key=wkey,
        db_file=db.file(wkey),
        default_config=dict(default_cfg),
        default_us=min(default_us) if default_us else None,
        best_config=dict(best["config"]) if best else None,
        best_us=float(best["median_us"]) if best else None,
        measured=measured,
        skipped=skipped,
        records=records,
    )


def parse_tracker(tracker: tuple[str, int] | str | None) -> tuple[str, int] | None:
    """``"HOST:PORT"`` or ``(host, port)`` as ``(host, port)``; ``None`` stays ``None``.

    Raises
    ------
    ValueError
        If the text is not ``HOST:PORT``.
    """
    if tracker is None:
        return None
    if isinstance(tracker, str):
        host, _, port = tracker.rpartition(":")
        if not port.isdigit():
            raise ValueError(f"tracker must be HOST:PORT, got {tracker!r}")
        return (host or "127.0.0.1", int(port))
    return (str(tracker[0]), int(tracker[1]))


def format_us(value: float | None) -> str:
    """A time in microseconds for people: ``"12.3 us"`` (3 significant digits), ``"-"``."""
    if value is None:
        return "-"
    v = float(value)
    if abs(v) >= 100:
        return f"{v:.0f} us"
    if abs(v) >= 10:
        return f"{v:.1f} us"
    if abs(v) >= 1:
        return f"{v:.2f} us"
    return f"{v:.3f} us"


def quiet_worker_logs() -> None:
    """Initializer of the runner's worker processes: no INFO line per candidate.

    An in-process :class:`tvm.rpc.LocalSession` logs ``load_module PATH`` at INFO on the
    ``RPCServer`` logger (which has its own handler) for every candidate; MetaSchedule's
    loggers are raised to WARNING too.
    """
    import logging

    import tvm.rpc.server  # noqa: F401  (sets the RPCServer logger to INFO on import)

    for name in ("RPCServer", "tvm.s_tir.meta_schedule"):
        logging.getLogger(name).setLevel(logging.WARNING)


def check_runnable(tgt: Any, remote: bool, key: str | None) -> None:
    """Refuse a tracker without key, and a foreign target without a tracker.

    Raises
    ------
    ValueError
        Naming the problem.
    """
    from tvm_bsp.kernels.targets import is_arm

    if remote and not key:
        raise ValueError("a tracker needs a device key")
    host_cpu = tgt.kind.name == "llvm" and not (is_arm(tgt) and os.uname().machine != "aarch64")
    if not remote and not host_cpu:
        raise ValueError(f"target {tgt} cannot run on this machine: give a tracker and key")


def arm_export(tgt: Any) -> bool:
    """Whether libraries for ``tgt`` are linked by the aarch64 cross compiler."""
    from tvm_bsp.kernels.targets import is_arm

    return bool(is_arm(tgt.host if tgt.kind.name != "llvm" and tgt.host else tgt))


def cleanup_artifact(path: str) -> None:
    """Remove an exported candidate, its arguments file and its (empty) directory."""
    for p in (Path(path), Path(path + measure.ARGS_SUFFIX)):
        p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        Path(path).parent.rmdir()


def _verbose() -> bool:
    import logging

    return logging.getLogger("tvm.s_tir.meta_schedule").isEnabledFor(logging.INFO)


class Measurer:
    """Run exported candidates of one workload and append every result to the database.

    Parameters
    ----------
    db : TuningDatabase
    wl : mapping
        The workload description (hashed into its key).
    wkey : str
        Its key.
    tgt : tvm.target.Target
    tracker : (host, port), optional
        With ``key``: measure on that device; without, in a local session.
    key : str, optional
    number, repeat, min_repeat_ms : int
        ``time_evaluator`` settings.
    session_timeout : float
    max_failures : int
        Consecutive failed measurements after which :class:`TuningError` is raised.
    run_evaluator : str
        Name of the ``f_run_evaluator`` in :mod:`.measure` (``"run_evaluator"`` for a kernel,
        ``"run_vm_step"`` for a Relax VM module).
    callback, log : callable, optional
        ``callback(record, records_in_db)`` after each write; progress messages.

    Raises
    ------
    TrackerError
        With a tracker: it does not answer or has no device under ``key`` (checked at once,
        before any candidate is built).
    """

    def __init__(
        self,
        db: TuningDatabase,
        wl: Mapping[str, Any],
        wkey: str,
        tgt: Any,
        *,
        tracker: tuple[str, int] | None,
        key: str | None,
        number: int,
        repeat: int,
        min_repeat_ms: int,
        session_timeout: float,
        max_failures: int,
        run_evaluator: str = "run_evaluator",
        callback: Callable[[dict[str, Any], int], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        from tvm.s_tir import meta_schedule as ms

        self.db, self.wl, self.wkey, self.tgt = db, dict(wl), wkey, tgt
        self.tracker, self.key = tracker, key
        self.remote = tracker is not None
        if tracker is not None:  # at once, not after the first candidate's retries
            check_tracker(tracker[0], int(tracker[1]), key or "")
        self.max_failures = max_failures
        self.failures = 0
        self.callback = callback
        self.say = log or (lambda _msg: None)
        evaluator = ms.runner.EvaluatorConfig(
            number=number, repeat=repeat, min_repeat_ms=min_repeat_ms, enable_cpu_cache_flush=False
        )
        if tracker is not None:
            rpc_config = ms.runner.RPCConfig(
                tracker_host=tracker[0],
                tracker_port=int(tracker[1]),
                tracker_key=key,
                session_timeout_sec=session_timeout,
            )
            create_session = None
        else:
            rpc_config = ms.runner.RPCConfig(
                "local", 1, "local", session_timeout_sec=session_timeout
            )
            create_session = measure.local_session
        self.runner = ms.runner.RPCRunner(
            rpc_config,
            evaluator,
            f_create_session=create_session,
            f_upload_module=measure.upload_module,
            f_alloc_argument=measure.alloc_arguments,
            f_run_evaluator=getattr(measure, run_evaluator),
            # per-candidate INFO lines of the workers only when MetaSchedule logs at INFO
            initializer=None if _verbose() else quiet_worker_logs,
        )
        self.device_type = "cpu" if tgt.kind.name == "llvm" else tgt.kind.name

    @property
    def db_file(self) -> Path:
        """The workload's record file."""
        return self.db.file(self.wkey)

    def close(self) -> None:
        """Shut the runner's worker pool down."""
        self.runner.pool.shutdown()

    def record(
        self,
        cfg: Mapping[str, Any],
        secs: Sequence[float] | None,
        error: str | None,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one record (``secs`` per repeat, or an ``error``); return the record count."""
        us = [float(s) * 1e6 for s in secs] if secs else []
        rec = {
            "config": dict(cfg),
            "median_us": float(np.median(us)) if us else None,
            "measurements_us": us,
            "target": str(self.tgt),
            "device_key": self.key if self.remote else None,
            "time": utc_now(),
            "error": error,
            **dict(extra or {}),
        }
        self.db.append(self.wl, rec)
        n = len(self.db.records(self.wkey))
        msg = format_us(rec["median_us"]) if us else f"failed: {error}"
        self.say(f"  {config_key(cfg)}: {msg}")
        if self.callback is not None:
            self.callback(rec, n)
        return n

    def stop(self, reason: str) -> TuningError:
        """A :class:`TuningError` naming the key and the records kept."""
        n = len(self.db.records(self.wkey))
        return TuningError(
            f"{reason}; {n} record(s) of workload {self.wkey} kept in {self.db_file}",
            self.key,
            n,
            self.db_file,
        )

    def _problem(self) -> str | None:
        """Why the device cannot be reached now (``None``: it is registered)."""
        assert self.tracker is not None and self.key is not None
        return tracker_problem(self.tracker[0], int(self.tracker[1]), self.key)

    def measure(
        self,
        cfg: Mapping[str, Any],
        artifact: str,
        arrays: Sequence[np.ndarray],
        extra: Mapping[str, Any] | None = None,
        threads: int = 0,
    ) -> bool:
        """Run one exported candidate with ``arrays`` as its arguments and record it.

        ``threads > 0`` sizes the device's thread pool first (Relax VM modules only).

        A transient failure is not recorded (the next run retries it).

        Returns
        -------
        bool
            Whether a measurement was recorded.

        Raises
        ------
        TuningError
            The device left the tracker, or ``max_failures`` runs in a row failed.
        """
        from tvm.s_tir import meta_schedule as ms
        from tvm.s_tir.meta_schedule.arg_info import TensorInfo

        measure.save_arguments(artifact, list(arrays), threads)
        problem = self._problem() if self.remote else None
        if problem is not None:
            raise self.stop(f"device {self.key!r} became unavailable: {problem}")
        infos = [TensorInfo(str(a.dtype), [int(s) for s in a.shape]) for a in arrays]
        rin = ms.runner.RunnerInput(artifact, self.device_type, infos)
        t0 = time.monotonic()
        (future,) = self.runner.run([rin])
        result = future.result()
        error = result.error_msg
        if error:
            problem = self._problem() if self.remote else None
            if problem is not None:
                raise self.stop(
                    f"device {self.key!r} became unavailable while measuring "
                    f"{config_key(cfg)} ({time.monotonic() - t0:.0f} s): {problem}"
                )
            self.failures += 1
            if self.failures >= self.max_failures:
                raise self.stop(
                    f"{self.failures} measurements in a row failed on "
                    f"{self.key or 'this machine'!r}; last error: {str(error).strip()[-500:]}"
                )
            self.say(f"  {config_key(cfg)}: run failed: {str(error).strip()[-300:]}")
            return False
        self.failures = 0
        self.record(cfg, [float(s) for s in result.run_secs], None, extra)
        return True
