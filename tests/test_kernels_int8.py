"""The int8 BSPC kernel against the numpy reference of tvm_bsp.bspc.quant_ops: int32
accumulators exactly, scaled outputs to float32 rounding; the quantizer bit for bit; the
dot-product instructions in the generated code; aarch64 (sdot) under qemu."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_bsp.bspc import BSPCMatrix, QuantizedBSPC, quantize_bspc
from tvm_bsp.bspc.quant_ops import (
    int8_accumulate,
    int8_matmat,
    int8_matvec,
    quantize_activations,
    scale_accumulators,
)
from tvm_bsp.kernels.int8_build import (
    INT8_ENTRY,
    QUANTIZE_ENTRY,
    build_spmm_int8,
    default_dot,
    int8_target,
)
from tvm_bsp.kernels.int8_stripes import GROUP, LANES, pack_int8_stripes
from tvm_bsp.prune import bsp_mask

HOST_DOTS = ["generic"] + (["vnni"] if default_dot(int8_target("host")) == "vnni" else [])


def _matrix(M, N, rb, cb, col_rate, row_rate, granularity, seed=0, empty=()) -> QuantizedBSPC:
    """A random BSP-pruned matrix; the blocks in ``empty`` (block numbers) keep nothing."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((M, N)) * rng.uniform(0.1, 3.0, (M, 1))).astype(np.float32)
    mask = bsp_mask(w, rb, cb, col_rate, row_rate)
    probe = BSPCMatrix.from_dense(w, mask, rb, cb)
    rbounds, cbounds = probe.row_bounds, probe.col_bounds
    for b in empty:
        r, c = divmod(b, cb)
        mask[rbounds[r] : rbounds[r + 1], cbounds[c] : cbounds[c + 1]] = False
    return quantize_bspc(BSPCMatrix.from_dense(w, mask, rb, cb), granularity)


def _frames(batch, N, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((N, batch)) * rng.uniform(0.01, 5.0, batch)).astype(np.float32)
    if batch > 2:
        x[:, 1] = 0.0  # an all-zero frame: zeros with scale 1
    return x


def _check(kernel, q, x):
    xq, sx = quantize_activations(x, "input")
    acc, y = kernel.accumulate(np.ascontiguousarray(xq.T), sx)
    want_acc = int8_accumulate(q, xq)
    np.testing.assert_array_equal(acc, want_acc.T)
    want = int8_matmat(q, x)
    np.testing.assert_array_equal(want, scale_accumulators(q, want_acc, sx))
    # (float(acc) * s_w) * s_x with per-row scales: no sum, so bit for bit
    np.testing.assert_array_equal(y, want.T)


CASES = [
    # M, N, rb, cb, col_rate, row_rate, empty blocks
    (100, 70, 10, 4, 3, 2, ()),
    (96, 80, 2, 3, 2, 1.5, (1, 4)),  # tall blocks: several panels per block
    (64, 39, 8, 4, 4, 4, (0, 5, 6, 7, 31)),  # high rate, a whole empty block row
    (50, 33, 1, 1, 1, 1, ()),  # dense, one block
    (37, 129, 5, 7, 8, 2, (3,)),
]


@pytest.mark.parametrize("dot", HOST_DOTS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("batch, threads", [(1, 1), (7, 2), (8, 3)])
def test_kernel_matches_reference(case, dot, batch, threads):
    M, N, rb, cb, cr, rr, empty = case
    q = _matrix(M, N, rb, cb, cr, rr, "row", seed=M + N, empty=empty)
    kernel = build_spmm_int8(q, batch, dot=dot, threads=threads)
    assert kernel.dot == dot
    _check(kernel, q, _frames(batch, N, seed=batch))


def test_matvec_and_state_activations():
    q = _matrix(120, 60, 6, 3, 2, 2, "row", seed=5)
    kernel = build_spmm_int8(q, 1)
    x = np.random.default_rng(6).uniform(-1.2, 1.2, 60).astype(np.float32)  # some clamping
    for kind in ("input", "state"):
        xq, sx = quantize_activations(x, kind)
        y = kernel(xq[None, :], sx)[0]
        np.testing.assert_array_equal(y, int8_matvec(q, x, kind))


def test_quantizer_is_bit_exact():
    q = _matrix(40, 255, 4, 2, 2, 2, "row")
    kernel = build_spmm_int8(q, 4)
    x = _frames(4, 255, seed=9).T.copy()
    x[2] = np.arange(-127, 128, dtype=np.float32) + 0.5  # halves: round half to even
    x[2, -1] = 127.0  # amax 127: the scale is 1 and x * inv stays a half
    x[3, :] = 1e-31  # below the floor: zeros, scale 1
    xq, sx = kernel.quantize(x)
    want_q, want_s = quantize_activations(x.T, "input")
    np.testing.assert_array_equal(xq, want_q.T)
    np.testing.assert_array_equal(sx, want_s)
    y = kernel(xq, sx)
    np.testing.assert_array_equal(y, int8_matmat(q, x.T).T)


def test_stripe_layout_decodes_to_the_matrix():
    """Every row in exactly one panel; unpacking the groups gives q_W back."""
    q = _matrix(100, 70, 10, 4, 3, 2, "row", seed=7, empty=(2, 13))
    a = pack_int8_stripes(q, 3).arrays
    dense = np.zeros(q.shape, np.int64)
    covered = np.zeros(q.shape[0], np.int64)
    for rb in range(q.row_blocks):
        gcols = a["gcols"][a["col_ptr"][rb] : a["col_ptr"][rb + 1]]
        for p in range(a["panel_ptr"][rb], a["panel_ptr"][rb + 1]):
            r0, nl = a["row0"][p], a["nlanes"][p]
            covered[r0 : r0 + nl] += 1
            for g in range(a["group_ptr"][p], a["group_ptr"][p + 1]):
                w = a["vals"][64 * g : 64 * g + 64].astype(np.int64).reshape(LANES, GROUP)
                cols = gcols[a["goff"][g] : a["goff"][g] + GROUP]
                assert not w[nl:].any()  # lanes past the stripe stay zero
                for v in range(nl):
                    np.add.at(dense[r0 + v], cols, w[v])
            lane_sums = 128 * dense[r0 : r0 + nl].sum(axis=1)
            np.testing.assert_array_equal(a["comp"][LANES * p : LANES * p + nl], lane_sums)
    np.testing.assert_array_equal(covered, 1)
    want = q.pattern(q.values.astype(np.float64)).to_dense().astype(np.int64)
    np.testing.assert_array_equal(dense, want)
    assert a["thread_brows"][0] == 0 and a["thread_brows"][-1] == q.row_blocks


def test_bad_inputs():
    q = _matrix(40, 30, 4, 2, 2, 2, "row")
    kernel = build_spmm_int8(q, 2)
    with pytest.raises(ValueError, match="xq must be an int8"):
        kernel(np.zeros((2, 30), np.float32), np.ones(2, np.float32))
    with pytest.raises(ValueError, match="sx must have shape"):
        kernel(np.zeros((2, 30), np.int8), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="dot must be one of"):
        build_spmm_int8(q, 1, dot="amx")
    with pytest.raises(ValueError, match="llvm target"):
        build_spmm_int8(q, 1, target="opencl-mali")
    with pytest.raises(TypeError, match="QuantizedBSPC"):
        pack_int8_stripes(q.dequantize())
    with pytest.raises(ValueError, match="batch"):
        build_spmm_int8(q, 0)
    with pytest.raises(NotImplementedError, match="'block_row' scales"):
        build_spmm_int8(quantize_bspc(q.dequantize(), "block_row"), 1)
    with pytest.raises(ValueError, match="'row' scales"):
        pack_int8_stripes(quantize_bspc(q.dequantize(), "block_row"))


@pytest.mark.skipif("vnni" not in HOST_DOTS, reason="host LLVM target without avx512vnni")
def test_host_build_uses_vpdpbusd():
    q = _matrix(100, 70, 10, 4, 3, 2, "row")
    assert "vpdpbusd" in build_spmm_int8(q, 4).inspect_source("asm")


def test_arm64_build_uses_sdot():
    q = _matrix(100, 70, 10, 4, 3, 2, "row")
    kernel = build_spmm_int8(q, 4, "arm64")
    assert kernel.dot == "sdot" and "+dotprod" in kernel.target.attrs["mattr"]
    assert "sdot\tv" in kernel.inspect_source("asm")


@pytest.mark.aarch64
@pytest.mark.parametrize("batch", [1, 6])
def test_int8_runs_on_arm64(batch, tmp_path):
    from tvm_bsp.devices.aarch64 import require_arm64, run_arm64_function

    require_arm64()
    q = _matrix(96, 80, 2, 3, 2, 1.5, "row", seed=3, empty=(1,))
    kernel = build_spmm_int8(q, batch, "arm64", threads=2)
    so = kernel.export(tmp_path / "int8.so")
    x = _frames(batch, 80, seed=4)
    xq, sx = quantize_activations(x, "input")
    acc, y = run_arm64_function(
        so, INT8_ENTRY, kernel.inputs(xq.T.copy(), sx), kernel.out_shapes, ["int32", "float32"]
    )
    want_acc = int8_accumulate(q, xq)
    np.testing.assert_array_equal(acc[:, : want_acc.shape[0]], want_acc.T)
    want = int8_matmat(q, x)
    np.testing.assert_allclose(y, want.T, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    got_q, got_s = run_arm64_function(
        so, QUANTIZE_ENTRY, [x.T.copy()], [(batch, 80), (batch,)], ["int8", "float32"]
    )
    np.testing.assert_array_equal(got_q, xq.T)
    np.testing.assert_array_equal(got_s, sx)
