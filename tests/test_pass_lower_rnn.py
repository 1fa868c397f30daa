"""LowerRNN: placeholder calls -> ``call_tir`` of the RNN kernels.

The module the pass emits is compared with a literal ``Expected`` *skeleton*: every function,
call, argument, type and piece of reshape glue as written, the kernels as empty stubs and the
packed constants as zeros of their shapes (:func:`skeleton`). What the skeleton leaves out is
checked on its own and without the code under test: each kernel's attributes (which template,
which knobs) and the numbers of the compiled module against numpy or torch.
"""

# ruff: noqa: N805  (methods of @I.ir_module classes are Relax functions: no self)

from __future__ import annotations

import json

import numpy as np
import torch
import tvm
from pass_modules import HOST
from torch import nn
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from tvm_bsp.bspc import BSPCMatrix
from tvm_bsp.frontend import from_torch, to_relax
from tvm_bsp.kernels.rnn_knobs import RNNKnobs
from tvm_bsp.passes import LowerRNN

#: Knobs as AttachSchedules records them (sorted JSON); 8 lanes, 2-frame tiles, one thread.
KNOBS = {
    "exact": False,
    "frames": 2,
    "k_split": 2,
    "lanes": 8,
    "min_parallel_macs": 150_000,
    "threads": 1,
}
LANES_8 = json.dumps({"*": KNOBS}, sort_keys=True)
LANES_4 = json.dumps({"*": {**KNOBS, "lanes": 4}}, sort_keys=True)
#: 8 lanes for every layer, 4 for the layer whose recurrent weight is ``weight_hh_l0``.
GRU_LANES_4 = json.dumps({"*": KNOBS, "weight_hh_l0": {**KNOBS, "lanes": 4}}, sort_keys=True)


@T.prim_func(private=True)
def _stub():
    T.evaluate(0)


@relax.expr_functor.mutator
class _ZeroConstants(relax.PyExprMutator):
    def visit_generic_const_(self, const: relax.Expr) -> relax.Expr:
        value = const.value
        if not hasattr(value, "shape"):  # a prim value's immediate, not a tensor
            return const
        return relax.const(np.zeros(value.shape, value.dtype))


def skeleton(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with every PrimFunc an empty stub and every tensor constant zeros of its shape.

    The Expected modules write their kernels as such stubs (so they parse only with
    ``check_well_formed=False``: a stub takes none of the arguments its ``call_tir`` passes).
    """
    out = tvm.IRModule({}, attrs=mod.attrs)
    for gv, func in mod.functions_items():
        out[gv] = (
            _stub if isinstance(func, tvm.tirx.PrimFunc) else _ZeroConstants().visit_expr(func)
        )
    return out


def zeros(length: int, dtype: str = "float32") -> relax.Expr:
    """A packed constant of ``length`` elements, as :func:`skeleton` writes it."""
    return relax.const(np.zeros(length, dtype))


def kernel(mod: tvm.IRModule, name: str) -> tuple[str, RNNKnobs, bool]:
    """Template, knobs and parallel flag the kernel ``name`` of ``mod`` was made with."""
    attrs = mod[name].attrs
    knobs = RNNKnobs(**json.loads(str(attrs["tvm_bsp.knobs"])))
    return str(attrs["tvm_bsp.kernel"]), knobs, bool(attrs["tvm_bsp.parallel"])


def run(mod: tvm.IRModule, func: str, *args: np.ndarray) -> list[np.ndarray]:
    """Compile ``mod`` for the host and call ``func``."""
    vm = relax.VirtualMachine(tvm.compile(mod, HOST), tvm.cpu())
    out = vm[func](*(tvm.runtime.tensor(a) for a in args))
    return [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]


# ---------------------------------------------------------------------- dense layers
def test_lower_dense_linear():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((12, 8)).astype(np.float32)
    bias = rng.standard_normal(12).astype(np.float32)

    @I.ir_module
    class Before:
        I.module_attrs({"tvm_bsp.knobs": LANES_8})

        @R.function
        def forward(x: R.Tensor(("n", 8), "float32")) -> R.Tensor(("n", 12), "float32"):
            n = T.int64()
            with R.dataflow():
                head_weight: R.Tensor((12, 8), "float32") = R.const(W)
                head_bias: R.Tensor((12,), "float32") = R.const(bias)
                y = R.call_dps_packed(
                    "tvm_bsp.linear",
                    (x, head_weight, head_bias),
                    out_ty=R.Tensor((n, 12), "float32"),
                )
                R.output(y)
            return y

    @I.ir_module(check_well_formed=False)
    class Expected:
        I.module_attrs({"tvm_bsp.knobs": LANES_8})

        @T.prim_func(private=True)
        def linear():
            T.evaluate(0)

        @R.function
        def forward(x: R.Tensor(("n", 8), "float32")) -> R.Tensor(("n", 12), "float32"):
            n = T.int64()
            cls = Expected
            with R.dataflow():
                # 12 rows in panels of 8 lanes: 16 x 8 packed weights, the bias padded to 16;
                # the original weight and bias are dead
                y = R.call_tir(
                    cls.linear, (x, zeros(16 * 8), zeros(16)), out_ty=R.Tensor((n, 12), "float32")
                )
                R.output(y)
            return y

    after = LowerRNN()(Before)
    tvm.ir.assert_structural_equal(skeleton(after), Expected)
    assert kernel(after, "linear") == ("dense_linear", RNNKnobs(frames=2), False)
    x = rng.standard_normal((5, 8)).astype(np.float32)  # 5 frames: 2-frame tiles + remainder
    (y,) = run(after, "forward", x)
    np.testing.assert_allclose(y, x @ W.T + bias, rtol=1e-5, atol=1e-5)


def _hand_bspc(rng: np.random.Generator) -> tuple[np.ndarray, BSPCMatrix]:
    """An (8, 8) weight on a 2 x 2 grid of 4 x 4 blocks, kept rows x kept columns per block:
    (0, 0): rows 0-3 x cols {0, 2}; (0, 1): rows {0, 3} x col {5}; (1, 0): nothing;
    (1, 1): rows 4-7 x cols {4, 6, 7}."""
    mask = np.zeros((8, 8), bool)
    mask[np.ix_([0, 1, 2, 3], [0, 2])] = True
    mask[np.ix_([0, 3], [5])] = True
    mask[np.ix_([4, 5, 6, 7], [4, 6, 7])] = True
    W = rng.standard_normal((8, 8)).astype(np.float32) * mask
    return W, BSPCMatrix.from_dense(W, mask, 2, 2)


def test_lower_bspc_linear():
    rng = np.random.default_rng(4)
    W, m = _hand_bspc(rng)
    bias = rng.standard_normal(8).astype(np.float32)

    @I.ir_module
    class Before:
        I.module_attrs({"tvm_bsp.knobs": LANES_4})

        @R.function
        def forward(x: R.Tensor(("n", 8), "float32")) -> R.Tensor(("n", 8), "float32"):
            n = T.int64()
            with R.dataflow():
                head_weight: R.Tensor((8, 8), "float32") = R.call_pure_packed(
                    "tvm_bsp.bspc",
                    R.const(m.values),
                    R.const(m.block_row_ptr),
                    R.const(m.rows),
                    R.const(m.block_col_ptr),
                    R.const(m.cols),
                    R.const(m.reorder),
                    R.shape([8, 8]),
                    R.shape([2, 2]),
                    ty_args=R.Tensor((8, 8), "float32"),
                )
                head_bias: R.Tensor((8,), "float32") = R.const(bias)
                y = R.call_dps_packed(
                    "tvm_bsp.linear",
                    (x, head_weight, head_bias),
                    out_ty=R.Tensor((n, 8), "float32"),
                )
                R.output(y)
            return y

    @I.ir_module(check_well_formed=False)
    class Expected:
        I.module_attrs({"tvm_bsp.knobs": LANES_4})

        @T.prim_func(private=True)
        def linear():
            T.evaluate(0)

        @R.function
        def forward(x: R.Tensor(("n", 8), "float32")) -> R.Tensor(("n", 8), "float32"):
            n = T.int64()
            cls = Expected
            with R.dataflow():
                # the panel layout, 4 lanes, one thread: one panel per row stripe; stripe 0
                # lists 2 + 1 columns, stripe 1 lists 3, each padded to k_split = 2 -> 8
                # columns: thread_ptr (2), panel_ptr (3), panel_rows (2 x 4), cols (8),
                # vals (8 x 4), bias (2 x 4)
                y = R.call_tir(
                    cls.linear,
                    (
                        x,
                        zeros(2, "int32"),
                        zeros(3, "int32"),
                        zeros(8, "int32"),
                        zeros(8, "int32"),
                        zeros(32),
                        zeros(8),
                    ),
                    out_ty=R.Tensor((n, 8), "float32"),
                )
                R.output(y)
            return y

    after = LowerRNN()(Before)
    tvm.ir.assert_structural_equal(skeleton(after), Expected)
    assert kernel(after, "linear") == ("bspc_linear", RNNKnobs(lanes=4, frames=2), False)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    (y,) = run(after, "forward", x)
    np.testing.assert_allclose(y, x @ W.T + bias, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------- recurrent layers
def test_lower_gru_layer():
    torch.manual_seed(0)
    gru = nn.GRU(5, 6)
    w_ih, w_hh, b_ih, b_hh = (p.detach().numpy().copy() for p in gru.parameters())

    @I.ir_module
    class Before:
        I.module_attrs({"tvm_bsp.knobs": GRU_LANES_4})

        @R.function
        def forward(x: R.Tensor(("t", "b", 5), "float32"), state: R.Tensor((1, "b", 6), "float32")):
            t, b = T.int64(), T.int64()
            with R.dataflow():
                weight_ih_l0: R.Tensor((18, 5), "float32") = R.const(w_ih)
                weight_hh_l0: R.Tensor((18, 6), "float32") = R.const(w_hh)
                bias_ih_l0: R.Tensor((18,), "float32") = R.const(b_ih)
                bias_hh_l0: R.Tensor((18,), "float32") = R.const(b_hh)
                rnn = R.call_dps_packed(
                    "tvm_bsp.rnn.gru",
                    (
                        x,
                        state,
                        R.prim_value(T.int64(0)),
                        weight_ih_l0,
                        weight_hh_l0,
                        bias_ih_l0,
                        bias_hh_l0,
                    ),
                    out_ty=[R.Tensor((t, b, 6), "float32"), R.Tensor((b, 6), "float32")],
                )
                y = rnn[0]
                h = rnn[1]
                new_state = R.stack((h,), axis=0)
                R.output(y, new_state)
            return (y, new_state)

        @R.function
        def step(x_t: R.Tensor(("b", 5), "float32"), state: R.Tensor((1, "b", 6), "float32")):
            b = T.int64()
            with R.dataflow():
                x = R.reshape(x_t, (1, b, 5))
                weight_ih_l0: R.Tensor((18, 5), "float32") = R.const(w_ih)
                weight_hh_l0: R.Tensor((18, 6), "float32") = R.const(w_hh)
                bias_ih_l0: R.Tensor((18,), "float32") = R.const(b_ih)
                bias_hh_l0: R.Tensor((18,), "float32") = R.const(b_hh)
                rnn = R.call_dps_packed(
                    "tvm_bsp.rnn.gru",
                    (
                        x,
                        state,
                        R.prim_value(T.int64(0)),
                        weight_ih_l0,
                        weight_hh_l0,
                        bias_ih_l0,
                        bias_hh_l0,
                    ),
                    out_ty=[R.Tensor((1, b, 6), "float32"), R.Tensor((b, 6), "float32")],
                )
                y = rnn[0]
                h = rnn[1]
                new_state = R.stack((h,), axis=0)
                y_t = R.reshape(y, (b, 6))
                R.output(y_t, new_state)
            return (y_t, new_state)

    @I.ir_module(check_well_formed=False)
    class Expected:
        I.module_attrs({"tvm_bsp.knobs": GRU_LANES_4})

        @T.prim_func(private=True)
        def input_projection():
            T.evaluate(0)

        @T.prim_func(private=True)
        def gru_sequence():
            T.evaluate(0)

        # the layer's knobs (4 lanes) for both kernels: W_ih's 18 rows in 5 panels of 4 lanes
        # (20 x 5 packed) and the folded input bias (20); U as 2 tiles of 4 units x 3 gates
        # (8 x 3 x 6 packed) and torch's b_hn (6), which stays inside the reset gate
        @R.function
        def forward(x: R.Tensor(("t", "b", 5), "float32"), state: R.Tensor((1, "b", 6), "float32")):
            t, b = T.int64(), T.int64()
            cls = Expected
            with R.dataflow():
                flat = R.reshape(x, (t * b, 5))
                proj = R.call_tir(
                    cls.input_projection,
                    (flat, zeros(20 * 5), zeros(20)),
                    out_ty=R.Tensor((t * b, 18), "float32"),
                )
                xp = R.reshape(proj, (t, b, 18))
                rnn = R.call_tir(
                    cls.gru_sequence,
                    (xp, state, zeros(8 * 3 * 6), zeros(6)),
                    out_ty=[R.Tensor((t, b, 6), "float32"), R.Tensor((b, 6), "float32")],
                )
                y = rnn[0]
                h = rnn[1]
                new_state = R.stack((h,), axis=0)
                R.output(y, new_state)
            return (y, new_state)

        # one frame: the projection reads x_t itself (reshape (b, 5) -> (1, b, 5) -> (b, 5)
        # looked through), the same kernels
        @R.function
        def step(x_t: R.Tensor(("b", 5), "float32"), state: R.Tensor((1, "b", 6), "float32")):
            b = T.int64()
            cls = Expected
            with R.dataflow():
                proj = R.call_tir(
                    cls.input_projection,
                    (x_t, zeros(20 * 5), zeros(20)),
                    out_ty=R.Tensor((b, 18), "float32"),
                )
                xp = R.reshape(proj, (1, b, 18))
                rnn = R.call_tir(
                    cls.gru_sequence,
                    (xp, state, zeros(8 * 3 * 6), zeros(6)),
                    out_ty=[R.Tensor((1, b, 6), "float32"), R.Tensor((b, 6), "float32")],
                )
                y = rnn[0]
                h = rnn[1]
                new_state = R.stack((h,), axis=0)
                y_t = R.reshape(y, (b, 6))
                R.output(y_t, new_state)
            return (y_t, new_state)

    after = LowerRNN()(Before)
    tvm.ir.assert_structural_equal(skeleton(after), Expected)
    lanes_4 = RNNKnobs(lanes=4, frames=2)
    assert kernel(after, "input_projection") == ("dense_linear", lanes_4, False)
    assert kernel(after, "gru_sequence") == ("dense_gru_sequence", lanes_4, False)

    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 5)).astype(np.float32)
    h0 = rng.standard_normal((1, 2, 6)).astype(np.float32)
    with torch.no_grad():
        y_ref, h_ref = (v.numpy() for v in gru(torch.from_numpy(x), torch.from_numpy(h0)))
    y, h = run(after, "forward", x, h0)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_allclose(h, h_ref, atol=1e-5)
    y1, h1 = run(after, "step", x[0], h0)
    np.testing.assert_allclose(y1, y_ref[0], atol=1e-5)
    np.testing.assert_allclose(h1, y_ref[:1], atol=1e-5)


def _call_tir(func: relax.Function) -> list[tuple[str, list]]:
    """``(kernel name, constant arguments)`` of each ``call_tir`` in ``func``, in order."""
    calls: list[tuple[str, list]] = []

    def visit(e: relax.Expr) -> None:
        if isinstance(e, relax.Call) and getattr(e.op, "name", "") == "relax.call_tir":
            consts = [a for a in e.args[1].fields if isinstance(a, tvm.ir.expr.Constant)]
            calls.append((e.args[0].name_hint, consts))

    relax.analysis.post_order_visit(func.body, visit)
    return calls


def test_lower_shares_kernels_and_constants_between_forward_and_step():
    torch.manual_seed(0)
    lowered = LowerRNN()(to_relax(from_torch(nn.GRU(5, 6))))
    names = sorted(gv.name_hint for gv in lowered.get_global_vars())
    assert names == ["forward", "gru_sequence", "input_projection", "step"]
    forward, step = _call_tir(lowered["forward"]), _call_tir(lowered["step"])
    assert [n for n, _ in forward] == [n for n, _ in step] == ["input_projection", "gru_sequence"]
    for (_, mine), (_, theirs) in zip(forward, step, strict=True):
        assert len(mine) == 2 and all(a.same_as(b) for a, b in zip(mine, theirs, strict=True))
    # no attributes: the generic defaults (8 lanes); the dense weights are dead after packing
    assert kernel(lowered, "gru_sequence") == ("dense_gru_sequence", RNNKnobs(), False)
    for fn in ("forward", "step"):
        assert "weight_hh_l0" not in lowered[fn].script(show_meta=False)
        assert "call_dps_packed" not in lowered[fn].script(show_meta=False)
