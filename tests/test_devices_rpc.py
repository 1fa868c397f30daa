"""Loopback RPC tracker + server on the host (tvm_bsp.devices.rpc)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tvm_bsp.devices.rpc import _port_open, local_rpc

tvm = pytest.importorskip("tvm")
psutil = pytest.importorskip("psutil")
from tvm import rpc, te  # noqa: E402

pytestmark = [pytest.mark.rpc, pytest.mark.slow]


def _vadd_lib(path, n):
    A = te.placeholder((n,), name="A")
    B = te.placeholder((n,), name="B")
    C = te.compute((n,), lambda i: A[i] + B[i], name="C")
    ex = tvm.compile(te.create_prim_func([A, B, C]), target="llvm")
    ex.export_library(str(path))
    return path


def test_host_roundtrip_and_cleanup(tmp_path):
    n = 257
    lib = _vadd_lib(tmp_path / "vadd_host.so", n)
    rng = np.random.default_rng(0)
    a = rng.standard_normal(n).astype("float32")
    b = rng.standard_normal(n).astype("float32")
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    with local_rpc("tvm-bsp-test-host") as endpoint:
        host, port, key = endpoint
        assert host == "127.0.0.1"
        assert key == "tvm-bsp-test-host"
        spawned = [p for p in me.children(recursive=True) if p.pid not in before]
        # tracker + server, each with its popen_worker child(ren)
        assert len(spawned) >= 4, [p.cmdline() for p in spawned]
        tracker = rpc.connect_tracker(host, port)
        assert "tvm-bsp-test-host" in tracker.text_summary()
        remote = tracker.request(key, priority=0, session_timeout=60)
        remote.upload(str(lib))
        rlib = remote.load_module(lib.name)
        dev = remote.cpu()
        A = tvm.runtime.tensor(a, dev)
        B = tvm.runtime.tensor(b, dev)
        C = tvm.runtime.tensor(np.zeros(n, "float32"), dev)
        rlib["main"](A, B, C)
        np.testing.assert_allclose(C.numpy(), a + b, rtol=1e-6)
        del remote, rlib, A, B, C
    time.sleep(0.2)
    alive = []
    for p in spawned:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p.cmdline())
        except psutil.NoSuchProcess:
            pass
    assert not alive, alive
    assert not _port_open(host, port)


def test_server_failure_is_reported():
    # an unknown option makes the server exit at once; the context manager must say so
    # and still stop the tracker
    with (
        pytest.raises(RuntimeError, match="exited"),
        local_rpc("tvm-bsp-bad", server_env={"PYTHONPATH": "/nonexistent", "PYTHONHOME": "/x"}),
    ):
        pass
