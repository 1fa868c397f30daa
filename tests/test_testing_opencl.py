"""TVM-generated OpenCL kernels executed on POCL through pyopencl (tvm_bsp.testing.opencl).

Needs ``scripts/setup_opencl.sh`` (POCL + pyopencl); skips with the reason otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest

from tvm_bsp.testing.opencl import (
    HostLoop,
    build_opencl_program,
    launch_count,
    opencl_available,
    opencl_target,
    run_opencl_prim_func,
)

tvm = pytest.importorskip("tvm")
from tvm import te  # noqa: E402

pytestmark = [
    pytest.mark.opencl,
    pytest.mark.skipif(
        not opencl_available(),
        reason="no OpenCL device through pyopencl; run scripts/setup_opencl.sh (POCL)",
    ),
]


def _matmul_gpu(n: int, tile: int = 16, k_tile: int = 8):
    """Tiled matmul: blockIdx/threadIdx bindings, shared-memory A/B tiles, local accumulator."""
    A = te.placeholder((n, n), name="A")
    B = te.placeholder((n, n), name="B")
    r = te.reduce_axis((0, n), name="r")
    C = te.compute((n, n), lambda i, j: te.sum(A[i, r] * B[r, j], axis=r), name="C")
    sch = tvm.s_tir.Schedule(te.create_prim_func([A, B, C]))
    blk = sch.get_sblock("C")
    i, j, k = sch.get_loops(blk)
    bi, ti = sch.split(i, [None, tile])
    bj, tj = sch.split(j, [None, tile])
    ko, ki = sch.split(k, [None, k_tile])
    sch.reorder(bi, bj, ti, tj, ko, ki)
    sch.bind(bi, "blockIdx.y")
    sch.bind(bj, "blockIdx.x")
    sch.bind(ti, "threadIdx.y")
    sch.bind(tj, "threadIdx.x")
    c_local = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(c_local, tj)
    for idx in (0, 1):
        shared = sch.cache_read(blk, idx, "shared")
        sch.compute_at(shared, ko)
        fused = sch.fuse(*sch.get_loops(shared)[-2:])
        _, ty, tx = sch.split(fused, [None, tile, tile])
        sch.bind(ty, "threadIdx.y")
        sch.bind(tx, "threadIdx.x")
    sch.decompose_reduction(blk, ko)
    return sch.mod


def _vadd_symbolic():
    """``n`` is a symbolic size: the kernel takes it as a scalar, the grid depends on it."""
    n = te.var("n")
    A = te.placeholder((n,), name="A")
    B = te.placeholder((n,), name="B")
    C = te.compute((n,), lambda i: A[i] * 2.0 + B[i], name="C")
    sch = tvm.s_tir.Schedule(te.create_prim_func([A, B, C]))
    (i,) = sch.get_loops(sch.get_sblock("C"))
    bx, tx = sch.split(i, [None, 64])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    return sch.mod


def _two_kernels(n: int):
    """Two thread-bound stages with a global intermediate buffer: two launches in order."""
    A = te.placeholder((n,), name="A")
    B = te.compute((n,), lambda i: A[i] * 3.0, name="B")
    C = te.compute((n,), lambda i: B[i] + 1.0, name="C")
    sch = tvm.s_tir.Schedule(te.create_prim_func([A, C]))
    for name in ("B", "C"):
        (i,) = sch.get_loops(sch.get_sblock(name))
        bx, tx = sch.split(i, [None, 32])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
    return sch.mod


def test_target_form():
    t = opencl_target()
    assert t.kind.name == "opencl"
    assert "mali" in t.keys
    assert t.host.kind.name == "llvm"


def test_tiled_matmul_shared_local():
    n = 128
    mod = _matmul_gpu(n)
    program = build_opencl_program(mod, opencl_target())
    assert "__local" in program.source  # the shared-memory stage reached the kernel
    assert "barrier(CLK_LOCAL_MEM_FENCE)" in program.source
    (launch,) = program.launches
    assert launch.kernel in program.source
    assert sorted(launch.launch_params) == [
        "blockIdx.x", "blockIdx.y", "threadIdx.x", "threadIdx.y",
    ]  # fmt: skip
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype("float32")
    b = rng.standard_normal((n, n)).astype("float32")
    c = np.full((n, n), np.nan, dtype="float32")  # the kernel must overwrite every element
    (out,) = program.run([a, b, c], out_indices=[2])
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)


def test_run_opencl_prim_func_matmul():
    n = 64
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n)).astype("float32")
    b = rng.standard_normal((n, n)).astype("float32")
    (out,) = run_opencl_prim_func(
        _matmul_gpu(n, tile=8, k_tile=4), opencl_target(), [a, b, np.zeros((n, n), "float32")], [2]
    )
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n", [1, 100, 128, 1000])
def test_symbolic_size_scalar_param(n):
    program = build_opencl_program(_vadd_symbolic(), opencl_target())
    (launch,) = program.launches
    assert any(a[0] == "scalar" for a in launch.args)
    rng = np.random.default_rng(n)
    a = rng.standard_normal(n).astype("float32")
    b = rng.standard_normal(n).astype("float32")
    (out,) = program.run([a, b, np.zeros(n, "float32")])
    np.testing.assert_allclose(out, a * 2.0 + b, rtol=1e-6)


def test_two_kernels_with_intermediate_buffer():
    n = 200
    program = build_opencl_program(_two_kernels(n), opencl_target())
    assert len(program.launches) == 2
    a = np.arange(n, dtype="float32")
    (out,) = program.run([a, np.zeros(n, "float32")])
    np.testing.assert_allclose(out, a * 3.0 + 1.0)


def test_unbound_function_is_refused():
    n = 16
    A = te.placeholder((n,), name="A")
    C = te.compute((n,), lambda i: A[i] + 1.0, name="C")
    with pytest.raises(ValueError, match=r"no OpenCL device module|launches no kernel"):
        build_opencl_program(te.create_prim_func([A, C]), opencl_target())


def test_scalar_parameters_tvmscript():
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def axpy(a: T.handle, b: T.handle, alpha: T.float32, n: T.int32):
        A = T.match_buffer(a, (n,), "float32")
        B = T.match_buffer(b, (n,), "float32")
        for bx in T.thread_binding((n + 31) // 32, thread="blockIdx.x"):
            for tx in T.thread_binding(32, thread="threadIdx.x"):
                with T.sblock("B"):
                    T.where(bx * 32 + tx < n)
                    vi = T.axis.spatial(n, bx * 32 + tx)
                    B[vi] = alpha * A[vi] + B[vi]

    program = build_opencl_program(axpy, opencl_target())
    (launch,) = program.launches
    assert [a[2] for a in launch.args if a[0] == "scalar"] == ["float32", "int32"]
    a = np.arange(70, dtype="float32")
    b = np.ones(70, dtype="float32")
    (out,) = program.run([a, b, 2.5, 70], out_indices=[1])  # B is read and written
    np.testing.assert_allclose(out, 2.5 * a + 1.0)


def _host_loop_recurrence():
    """``x <- 0.5 * x + t`` for ``t < steps`` (a scalar parameter), then ``y = x``: a serial host
    loop around a kernel launch, a launch before and one after it, a global scratch buffer."""
    from tvm.script import tirx as T

    @T.prim_func
    def recurrence(a: T.handle, y: T.handle, start: T.int32, steps: T.int32):
        T.func_attr({"global_symbol": "main", "tirx.noalias": True})
        n = T.int64()
        A = T.match_buffer(a, (n,), "float32")
        Y = T.match_buffer(y, (n,), "float32")
        x = T.alloc_buffer((2, n), "float32")
        for bx in T.thread_binding((n + 31) // 32, thread="blockIdx.x"):
            for tx in T.thread_binding(32, thread="threadIdx.x"):
                if bx * 32 + tx < n:
                    x[0, bx * 32 + tx] = A[bx * 32 + tx]
        for t in range(steps):
            for bx in T.thread_binding((n + 31) // 32, thread="blockIdx.x"):
                for tx in T.thread_binding(32, thread="threadIdx.x"):
                    if bx * 32 + tx < n:
                        x[(t + 1) % 2, bx * 32 + tx] = T.float32(0.5) * x[
                            t % 2, bx * 32 + tx
                        ] + T.Cast("float32", t + start)
        for bx in T.thread_binding((n + 31) // 32, thread="blockIdx.x"):
            for tx in T.thread_binding(32, thread="threadIdx.x"):
                if bx * 32 + tx < n:
                    Y[bx * 32 + tx] = x[steps % 2, bx * 32 + tx]

    return recurrence


@pytest.mark.parametrize("n, start, steps", [(5, 0, 0), (70, 3, 1), (33, -2, 9)])
def test_serial_host_loop(n, start, steps):
    program = build_opencl_program(_host_loop_recurrence(), opencl_target())
    _, loop, _ = program.launches
    assert isinstance(loop, HostLoop) and len(loop.body) == 1
    assert launch_count(program.launches) == 3
    a = np.random.default_rng(n).standard_normal(n).astype("float32")
    expected = a.astype(np.float64)
    for t in range(steps):
        expected = 0.5 * expected + (t + start)
    (out,) = program.run([a, np.full(n, np.nan, "float32"), start, steps], out_indices=[1])
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_host_store_in_loop_is_refused():
    from tvm.script import tirx as T

    @T.prim_func
    def host_store(a: T.handle, b: T.handle):
        T.func_attr({"global_symbol": "main"})
        A = T.match_buffer(a, (64,), "float32")
        B = T.match_buffer(b, (2,), "float32")
        for t in range(2):
            B[t] = T.float32(1)
            for bx in T.thread_binding(2, thread="blockIdx.x"):
                for tx in T.thread_binding(32, thread="threadIdx.x"):
                    A[bx * 32 + tx] = A[bx * 32 + tx] + T.Cast("float32", t)

    with pytest.raises(NotImplementedError, match=r"host code|not a kernel launch"):
        build_opencl_program(host_store, opencl_target())
