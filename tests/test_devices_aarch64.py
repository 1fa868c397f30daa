"""aarch64 builds executed under qemu-user (tvm_bsp.devices.aarch64, tvm_bsp.deploy.cross).

Needs ``sudo scripts/setup_aarch64_emulator.sh``; every test skips with the reason otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tvm_bsp.deploy.cross import ARM64_CXX
from tvm_bsp.devices.aarch64 import (
    arm64_root,
    binfmt_registered,
    require_arm64,
    run_arm64_function,
    run_in_arm64,
)

tvm = pytest.importorskip("tvm")
from tvm import te  # noqa: E402

pytestmark = pytest.mark.aarch64


@pytest.fixture(scope="module")
def root():
    return require_arm64()


def _vadd(n: int):
    A = te.placeholder((n,), name="A")
    B = te.placeholder((n,), name="B")
    C = te.compute((n,), lambda i: A[i] + B[i], name="C")
    return te.create_prim_func([A, B, C])


def _matmul(m: int, n: int, k: int):
    A = te.placeholder((m, k), name="A")
    B = te.placeholder((k, n), name="B")
    r = te.reduce_axis((0, k), name="r")
    C = te.compute((m, n), lambda i, j: te.sum(A[i, r] * B[r, j], axis=r), name="C")
    return te.create_prim_func([A, B, C])


def _matmul_parallel_vectorized(m: int, n: int, k: int):
    sch = tvm.s_tir.Schedule(_matmul(m, n, k))
    blk = sch.get_sblock("C")
    i, j, r = sch.get_loops(blk)
    jo, ji = sch.split(j, [None, 8])
    sch.reorder(i, jo, r, ji)
    sch.parallel(i)
    sch.vectorize(ji)
    sch.decompose_reduction(blk, r)
    return sch.mod


def _build(func, path):
    from tvm_bsp.deploy.cross import arm64_target, export_arm64

    return export_arm64(tvm.compile(func, target=arm64_target()), path)


def test_arm64_target_keys():
    from tvm_bsp.deploy.cross import arm64_target

    t = arm64_target()
    assert t.kind.name == "llvm"
    assert str(t.attrs["mtriple"]) == "aarch64-linux-gnu"
    assert "arm_cpu" in t.keys
    assert bool(t.attrs["feature.has_asimd"])


@pytest.mark.skipif(shutil.which(ARM64_CXX) is None, reason=f"{ARM64_CXX} not installed")
def test_export_is_aarch64_elf(tmp_path):
    path = _build(_vadd(64), tmp_path / "sub" / "vadd.so")
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF"
    assert int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
    assert [p.name for p in path.parent.iterdir()] == ["vadd.so"]  # no temp files left


def test_run_in_arm64_machine_files_args(root, tmp_path):
    data = tmp_path / "payload.txt"
    data.write_text("hello")
    res = run_in_arm64(
        """
        import os, platform, sys
        print(platform.machine(), open("data/payload.txt").read(), sys.argv[1:])
        print(os.environ["TVM_USE_RUNTIME_LIB"], os.path.isdir("/proc/self"))
        """,
        files={"data/payload.txt": data},
        args=["a", "b"],
        timeout=120,
        check=True,
    )
    lines = res.stdout.splitlines()
    assert lines[0] == "aarch64 hello ['a', 'b']"
    assert lines[1].startswith("1 ")


def test_run_in_arm64_cleans_work_dir(root):
    res = run_in_arm64("import os; print(os.getcwd())", timeout=120, check=True)
    guest_dir = res.stdout.strip()
    assert "tvm-bsp-" in guest_dir
    # chroot mode shows a guest path, qemu mode the host path
    host_dir = Path(guest_dir) if guest_dir.startswith(str(root)) else root / guest_dir[1:]
    assert host_dir.parent == root / "tmp"
    assert not host_dir.exists()


def test_run_in_arm64_timeout_kills_children(root):
    psutil = pytest.importorskip("psutil")
    token = f"{uuid.uuid4().int % 10**6}.{time.time_ns() % 10**6}"
    script = f"""
        import subprocess, time
        subprocess.Popen(["sleep", "{token}"])
        time.sleep(600)
    """
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_in_arm64(script, timeout=8)
    assert time.monotonic() - start < 60
    time.sleep(0.5)
    leftovers = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if token in " ".join(cmd):
            leftovers.append(p)
    assert not leftovers, [p.info["cmdline"] for p in leftovers]


def test_vadd(root, tmp_path):
    n = 1000
    lib = _build(_vadd(n), tmp_path / "vadd.so")
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(n).astype("float32") for _ in range(2))
    (c,) = run_arm64_function(lib, "main", [a, b], [(n,)], "float32")
    np.testing.assert_allclose(c, a + b, rtol=1e-6)


def test_matmul(root, tmp_path):
    m, n, k = 17, 23, 31
    lib = _build(_matmul(m, n, k), tmp_path / "mm.so")
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k)).astype("float32")
    b = rng.standard_normal((k, n)).astype("float32")
    (c,) = run_arm64_function(lib, "main", [a, b], [(m, n)])
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


def test_matmul_parallel_vectorized(root, tmp_path):
    m, n, k = 32, 64, 48
    mod = _matmul_parallel_vectorized(m, n, k)
    lib = _build(mod, tmp_path / "mm_pv.so")
    rng = np.random.default_rng(2)
    a = rng.standard_normal((m, k)).astype("float32")
    b = rng.standard_normal((k, n)).astype("float32")
    (c,) = run_arm64_function(lib, "main", [a, b], [(m, n)])
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


def test_relax_vm_executable(root, tmp_path):
    from tvm import relax, topi

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 8), "float32"))
    w = relax.Var("w", relax.TensorType((8, 3), "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit_te(topi.matmul, x, w)
            z = bb.emit_te(topi.tanh, y)
            out = bb.emit_output(relax.Tuple([z, y]))
        bb.emit_func_output(out)
    lib = _build(bb.get(), tmp_path / "vm.so")
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 8)).astype("float32")
    b = rng.standard_normal((8, 3)).astype("float32")
    z, y = run_arm64_function(lib, "main", [a, b], relax=True)
    np.testing.assert_allclose(y, a @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z, np.tanh(a @ b), rtol=1e-5, atol=1e-5)


def test_failure_is_reported(root, tmp_path):
    lib = _build(_vadd(8), tmp_path / "vadd8.so")
    with pytest.raises(RuntimeError, match=r"no_such_function|not found|cannot find"):
        run_arm64_function(lib, "no_such_function", [np.zeros(8, "float32")] * 2, [(8,)])


@pytest.mark.rpc
@pytest.mark.slow
def test_rpc_server_in_emulator(root, tmp_path):
    from tvm import rpc

    from tvm_bsp.devices.rpc import local_rpc

    if not binfmt_registered():
        pytest.skip("the RPC server's aarch64 worker processes need binfmt_misc")

    m, n, k = 16, 32, 24
    lib = _build(_matmul_parallel_vectorized(m, n, k), tmp_path / "mm_rpc.so")
    rng = np.random.default_rng(4)
    a = rng.standard_normal((m, k)).astype("float32")
    b = rng.standard_normal((k, n)).astype("float32")
    with local_rpc("tvm-bsp-test-arm64", arm64=True) as (host, port, key):
        remote = rpc.connect_tracker(host, port).request(key, priority=0, session_timeout=120)
        remote.upload(str(lib))
        rlib = remote.load_module(lib.name)
        dev = remote.cpu()
        A = tvm.runtime.tensor(a, dev)
        B = tvm.runtime.tensor(b, dev)
        C = tvm.runtime.tensor(np.zeros((m, n), "float32"), dev)
        rlib["main"](A, B, C)
        np.testing.assert_allclose(C.numpy(), a @ b, rtol=1e-4, atol=1e-4)


def test_arm64_root_matches_require(root):
    assert arm64_root() == root
