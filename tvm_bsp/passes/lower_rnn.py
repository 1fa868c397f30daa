"""LowerRNN: lower recurrent-layer and dense-layer placeholders to the RNN kernels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tvm
from tvm import relax

from tvm_bsp.frontend.relax_import import LINEAR_OP, RNN_OPS
from tvm_bsp.kernels.layer_weights import LayerWeights, Weight
from tvm_bsp.kernels.opencl.knobs import GPURNNKnobs
from tvm_bsp.kernels.rnn_knobs import RNNKnobs
from tvm_bsp.kernels.rules import kernels_for
from tvm_bsp.passes.attach_schedules import TARGET_ATTR
from tvm_bsp.passes.ir_utils import (
    BSPC_OP,
    bspc_from_call,
    call_args,
    constant_array,
    extern_name,
    is_constant,
)

_CELLS = {op: cell for cell, op in RNN_OPS.items()}


def _same_shape(expr: relax.Expr, shape: tuple) -> bool:
    current = getattr(expr.ty, "shape", None)
    if current is None or len(current) != len(shape):
        return False
    analyzer = tvm.sym.Analyzer()
    return all(analyzer.can_prove_equal(a, b) for a, b in zip(current, shape, strict=True))


class _Operand:
    """A weight or bias operand: its variable name, defining expression and value."""

    def __init__(self, lowerer: _Lowerer, expr: relax.Expr) -> None:
        self.name = expr.name if isinstance(expr, relax.Var) else "<inline>"
        value = lowerer.lookup_binding(expr) if isinstance(expr, relax.Var) else expr
        if value is None or not (is_constant(value) or extern_name(value) == BSPC_OP):
            raise ValueError(f"weight operand {self.name} is neither a constant nor a BSPC form")
        self.expr = value  # the same object in every function that shares the weight
        self._value: Weight | None = None

    @property
    def value(self) -> Weight:
        """The dense array or the (validated) BSPC matrix."""
        if self._value is None:
            is_bspc = extern_name(self.expr) == BSPC_OP
            self._value = bspc_from_call(self.expr) if is_bspc else constant_array(self.expr)
        return self._value


@relax.expr_functor.mutator
class _Lowerer(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.mod_ = mod
        self.cache: dict[tuple, Any] = {}
        # the kernels of the attached target (a module no attach pass has seen: the CPU's)
        self.kernels = kernels_for((mod.attrs or {}).get(TARGET_ATTR))

    def knobs(self, weight_var: str) -> RNNKnobs | GPURNNKnobs:
        """The attached knobs of a layer, of the target's knob class."""
        return self.kernels.attached_knobs(self.mod_, weight_var)

    def cached(self, key: tuple, make: Callable[[], Any]) -> Any:
        """Build once per key: ``forward`` and ``step`` share weights, kernels and constants."""
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def reshape(self, expr: relax.Expr, shape: tuple) -> relax.Expr:
        """``reshape(expr, shape)``, looking through a reshape that produced ``expr`` and
        skipping a no-op (each costs a VM instruction per call, which a streaming step pays)."""
        source = self.lookup_binding(expr) if isinstance(expr, relax.Var) else None
        if isinstance(source, relax.Call) and getattr(source.op, "name", "") == "relax.reshape":
            expr = source.args[0]
        if _same_shape(expr, shape):
            return expr
        return self.builder_.emit(relax.op.reshape(expr, shape))

    def call(self, kernel: tuple, name: str, args: list, out_ty) -> relax.Call:
        func, consts = kernel
        gv = self.builder_.add_func(func, name)
        return relax.call_tir(gv, [*args, *consts], out_ty)

    # -------------------------------------------------------------- lowering
    def linear(self, x2d, w: _Operand, bias: np.ndarray, knobs, key: tuple, name: str):
        def make():
            func, consts, rows = self.kernels.linear_kernel(w.value, bias, knobs)
            return (func, [relax.const(c) for c in consts]), rows

        kernel, rows = self.cached(("linear", w.expr, knobs, *key), make)
        N = x2d.ty.shape[0]
        return self.call(kernel, name, [x2d], relax.TensorType([N, rows], "float32"))

    def rnn(self, cell: str, call: relax.Call) -> relax.Expr:
        x, state, index, w_ih, w_hh, b_ih, last, *extra = call_args(call)
        layer = int(index.value)
        u, w, bias = _Operand(self, w_hh), _Operand(self, w_ih), _Operand(self, b_ih)
        rec = None if cell == "kaldi_gru" else _Operand(self, last)
        hr = _Operand(self, extra[0]) if extra else None
        scale = float(last.value) if cell == "kaldi_gru" else 1.0
        knobs = self.knobs(u.name)
        if hr is not None and not self.kernels.projected_lstm:
            raise NotImplementedError(
                f"LSTM projection ({hr.name}, proj_size > 0) is not supported on "
                f"{self.kernels.name} targets; compile it for a CPU (llvm) target"
            )
        key = (cell, u.expr, bias.expr, rec.expr if rec else None, scale, knobs, layer)
        key += (hr.expr,) if hr is not None else ()

        def make():
            b_hh = None if rec is None else rec.value
            proj = None if hr is None else hr.value
            weights = LayerWeights(cell, u.value, bias.value, b_hh, scale, layer, proj)
            seq = self.kernels.sequence_kernel(weights, knobs)
            outputs = getattr(seq, "outputs", seq.hidden)
            return (
                (seq.func, [relax.const(c) for c in seq.consts]),
                seq.input_bias,
                seq.hidden,
                outputs,
            )

        kernel, input_bias, H, S = self.cached(("sequence", *key), make)
        T, B, I = x.ty.shape
        flat = self.reshape(x, (T * B, I))
        proj = self.linear(flat, w, input_bias, knobs, key, "input_projection")
        xp = self.reshape(self.builder_.emit(proj), (T, B, len(input_bias)))
        outs = [relax.TensorType([T, B, S], "float32")]
        outs += [relax.TensorType([B, H], "float32")] * (2 if cell == "lstm" else 1)
        return self.call(kernel, f"{cell}_sequence", [xp, state], outs)

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        name = extern_name(call)
        if name in _CELLS:
            return self.rnn(_CELLS[name], call)
        if name == LINEAR_OP:
            x, w, b = call_args(call)
            weight, bias = _Operand(self, w), _Operand(self, b)
            knobs = self.knobs(weight.name)
            return self.linear(x, weight, bias.value, knobs, (bias.expr,), "linear")
        return call


def LowerRNN() -> tvm.transform.Pass:
    """Lower the placeholders of :mod:`tvm_bsp.frontend.relax_import` to kernel calls.

    Each recurrent layer becomes two ``call_tir``: the input projection of all frames as one
    mat-mat product (:mod:`tvm_bsp.kernels.cpu.linear`; the biases that do not depend on the state
    folded into it) and the sequence kernel with the time loop inside
    (:func:`tvm_bsp.kernels.cpu.sequence.cpu_sequence`, its weight form chosen by whether the
    recurrent weight is dense or in BSPC form). Each dense layer becomes one mat-mat call.
    For an OpenCL target (recorded by :func:`~tvm_bsp.passes.AttachOpenCLSchedules`)
    the kernels are those of
    :mod:`tvm_bsp.kernels.opencl.sequence` (same signatures up to the packed
    constants: a host loop over time launching per-step device kernels).
    Weights are packed into the kernels' layouts as new constants (once per weight, shared by
    the functions that use it); the originals die (dead-code elimination runs at the end).
    Kernel knobs come from :func:`~tvm_bsp.passes.AttachSchedules` (generic defaults without
    it).

    Returns
    -------
    tvm.transform.Pass
    """

    @tvm.transform.module_pass(opt_level=0, name="LowerRNN")
    def transform(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        lowerer = _Lowerer(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                lowerer.builder_.update_func(gv, lowerer.visit_expr(func))
        out = lowerer.builder_.get()
        # reshape(reshape(x, a), b) -> reshape(x, b), and no-op reshapes dropped: each
        # reshape is a VM instruction per call
        out = relax.transform.RemoveRedundantReshape()(out)
        return relax.transform.DeadCodeElimination()(out)

    return transform
