"""Tuning BSPC kernels through a local RPC tracker + server (host, and aarch64 under qemu)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from tvm_bsp.bspc import BSPCMatrix
from tvm_bsp.devices.rpc import local_rpc
from tvm_bsp.prune import bsp_mask_at_rate
from tvm_bsp.tune import (
    TuningDatabase,
    TuningError,
    apply_best,
    best_config,
    tune_spmm,
    workload_key,
)

FAST = {"number": 10, "repeat": 3, "min_repeat_ms": 5, "session_timeout": 60.0}


def _matrix(M: int = 128, N: int = 96, seed: int = 0) -> BSPCMatrix:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((M, N)).astype(np.float32)
    mask = np.asarray(bsp_mask_at_rate(w, 8, 4, 6.0, 2.0))
    return BSPCMatrix.from_dense(w, mask, 8, 4)


def _kill_server(key: str) -> None:
    """SIGKILL the process group of the RPC server registered under ``key`` (our own)."""
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "tvm.exec.rpc_server" in cmd and key in cmd and proc.info["pid"] != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(proc.info["pid"]), signal.SIGKILL)


def _reapply_in_fresh_process(db: Path, npz: Path, target: str) -> dict:
    """Load the matrix, apply_best + build_spmm in a new interpreter; compare with numpy."""
    code = textwrap.dedent(
        f"""
        import json, numpy as np
        from tvm_bsp.bspc import load_bspc
        from tvm_bsp.kernels.build import build_spmm
        from tvm_bsp.tune import apply_best
        b = load_bspc({str(npz)!r})
        cfg = apply_best({str(db)!r}, b, 1, {target!r}, None)
        out = {{"config": cfg}}
        if {target!r} == "host":
            k = build_spmm(b, 1, "host", config=cfg)
            x = np.random.default_rng(1).standard_normal(b.shape[1]).astype(np.float32)
            out["err"] = float(np.abs(k(x) - b.to_dense() @ x).max())
        print(json.dumps(out))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.rpc
def test_tune_host_rpc_reapply_and_resume(tmp_path: Path) -> None:
    from tvm_bsp.bspc import save_bspc

    b = _matrix()
    db = tmp_path / "db"
    key = f"tune-host-{uuid.uuid4().hex[:8]}"
    with local_rpc(key) as (host, port, k):
        res = tune_spmm(b, db, trials=4, tracker=(host, port), key=k, **FAST)
        assert res.measured == 4 and res.skipped == 0
        assert res.default_us is not None and res.best_us is not None
        assert res.best_us <= res.default_us
        records = TuningDatabase(db).records(workload_key(b, 1, "host"))
        assert len(records) == 4
        for r in records:
            assert r["device_key"] == key and r["median_us"] > 0 and len(r["measurements_us"]) == 3
        assert best_config(db, b, 1, "host") == res.best_config

        # resume: the same 4 candidates are skipped, 2 more are measured
        again = tune_spmm(b, db, trials=6, tracker=f"{host}:{port}", key=k, **FAST)
        assert again.skipped == 4 and again.measured == 2
        assert len(TuningDatabase(db).records(again.workload_key)) == 6
        assert again.best_us <= again.default_us

    npz = tmp_path / "w.npz"
    save_bspc(b, npz)
    out = _reapply_in_fresh_process(db, npz, "host")
    assert out["config"] == apply_best(db, b, 1, "host")
    assert out["err"] < 1e-3
    # another workload (different epilogue) has no record
    assert apply_best(db, b, 1, "host", "tanh") is None


@pytest.mark.rpc
def test_server_killed_mid_run_keeps_records(tmp_path: Path) -> None:
    b = _matrix(seed=3)
    db = tmp_path / "db"
    key = f"tune-kill-{uuid.uuid4().hex[:8]}"
    seen: list[int] = []

    def kill_after_two(_record: dict, n: int) -> None:
        seen.append(n)
        if n == 2:
            _kill_server(key)

    with local_rpc(key) as (host, port, k), pytest.raises(TuningError) as info:
        tune_spmm(
            b, db, trials=6, tracker=(host, port), key=k, callback=kill_after_two,
            build_chunk=2, **{**FAST, "session_timeout": 20.0},
        )  # fmt: skip
    err = info.value
    assert key in str(err) and "2 record(s)" in str(err)
    assert err.key == key and err.records_kept == 2
    data = json.loads(err.db_file.read_text())
    assert len(data["records"]) == 2
    assert all(r["median_us"] > 0 for r in data["records"])
    assert best_config(db, b, 1, "host") is not None


def test_local_session_without_tracker(tmp_path: Path) -> None:
    b = _matrix(64, 64, seed=5)
    res = tune_spmm(b, tmp_path, trials=2, **FAST)
    assert res.measured == 2 and res.best_us <= res.default_us
    cfg = apply_best(tmp_path, b)
    assert cfg == res.best_config


@pytest.mark.rpc
@pytest.mark.aarch64
@pytest.mark.slow
def test_tune_arm64_rpc_under_qemu(tmp_path: Path) -> None:
    import tvm
    from tvm import rpc

    from tvm_bsp.bspc import save_bspc
    from tvm_bsp.devices.aarch64 import require_arm64
    from tvm_bsp.kernels.build import build_spmm

    require_arm64()
    b = _matrix(64, 64, seed=7)
    db = tmp_path / "db"
    npz = tmp_path / "w.npz"
    save_bspc(b, npz)
    key = f"tune-arm64-{uuid.uuid4().hex[:8]}"
    with local_rpc(key, arm64=True) as (host, port, k):
        res = tune_spmm(
            b, db, target="arm64", trials=3, tracker=(host, port), key=k,
            **{**FAST, "session_timeout": 180.0},
        )  # fmt: skip
        assert res.measured == 3 and res.best_us <= res.default_us
        assert all(r["device_key"] == key for r in res.records)
        again = tune_spmm(b, db, target="arm64", trials=3, tracker=(host, port), key=k, **FAST)
        assert again.measured == 0 and again.skipped == 3

        # a fresh process re-applies the best config; the kernel runs on the device
        out = _reapply_in_fresh_process(db, npz, "arm64")
        assert out["config"] == res.best_config
        kernel = build_spmm(b, 1, "arm64", config=out["config"])
        lib = kernel.export(tmp_path / "best.so")
        remote = rpc.connect_tracker(host, port).request(k, session_timeout=180)
        remote.upload(str(lib))
        mod = remote.load_module(lib.name)
        dev = remote.cpu()
        x = np.random.default_rng(2).standard_normal(b.shape[1]).astype(np.float32)
        args = [tvm.runtime.tensor(a, dev) for a in kernel.inputs(x)]
        y = tvm.runtime.tensor(np.zeros(kernel.out_shape, np.float32), dev)
        mod[kernel.entry](*args, y)
        got = y.numpy().reshape(-1)
        np.testing.assert_allclose(got, b.to_dense() @ x, rtol=1e-4, atol=1e-4)
