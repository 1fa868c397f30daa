"""SparsifyWeights: replace named dense weights by their BSPC form."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tvm
from tvm import relax

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.passes.ir_utils import bspc_call, constant_array, is_constant, var_name


@relax.expr_functor.mutator
class _Sparsifier(relax.PyExprMutator):
    def __init__(
        self,
        mod: tvm.IRModule,
        table: dict[str, tuple[str, BSPCMatrix]],
        atol: float,
        forms: dict[str, relax.Expr],
    ):
        super().__init__(mod)
        self.table = table
        self.atol = atol
        self.forms = forms  # one BSPC form per weight, shared by all functions
        self.done: set[str] = set()

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        entry = self.table.get(binding.var.name)
        if entry is None or not is_constant(binding.value):
            super().visit_var_binding_(binding)
            return
        name, matrix = entry
        if name not in self.forms:
            _check_against(name, matrix, constant_array(binding.value), self.atol)
            self.forms[name] = self.builder_.normalize(bspc_call(matrix))
        self.builder_.emit_normalized(relax.VarBinding(binding.var, self.forms[name]))
        self.done.add(name)


def _check_against(name: str, matrix: BSPCMatrix, dense: np.ndarray, atol: float) -> None:
    if tuple(dense.shape) != tuple(matrix.shape):
        raise ValueError(f"BSPC matrix for {name!r} is {matrix.shape}, the weight is {dense.shape}")
    if atol < 0:
        return
    diff = np.abs(matrix.to_dense().astype(np.float64) - dense)
    if diff.max(initial=0.0) > atol * (1.0 + np.abs(dense).max(initial=0.0)):
        i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
        raise ValueError(
            f"BSPC matrix for {name!r} differs from the model's weight at [{i}, {j}] "
            f"({matrix.to_dense()[i, j]} vs {dense[i, j]}): the model must be zero outside the "
            "BSPC structure and equal inside it"
        )


def SparsifyWeights(bspc: Mapping[str, BSPCMatrix], atol: float = 1e-6) -> tvm.transform.Pass:
    """Replace dense weights by their BSPC form.

    Every weight constant bound to a variable named after a key of ``bspc`` (see
    :mod:`tvm_bsp.frontend.relax_import`) becomes the ``tvm_bsp.bspc`` form of
    :mod:`tvm_bsp.passes.ir_utils`; other weights stay dense.

    Parameters
    ----------
    bspc : mapping of str to BSPCMatrix
        Parameter name (``"rnn.weight_hh_l0"``) -> the weight in BSPC.
    atol : float
        The dense weight must equal the BSPC matrix's dense form within
        ``atol * (1 + max|w|)`` (so nothing outside the structure is dropped); negative
        disables the check.

    Returns
    -------
    tvm.transform.Pass

    Raises
    ------
    ValueError
        If a name matches no weight, the shapes differ, or the values disagree.
    """
    table = {var_name(name): (name, m) for name, m in bspc.items()}

    @tvm.transform.module_pass(opt_level=0, name="SparsifyWeights")
    def transform(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        done: set[str] = set()
        forms: dict[str, relax.Expr] = {}
        out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)  # the input stays
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                mutator = _Sparsifier(mod, table, atol, forms)
                out[gv] = mutator.visit_expr(func)
                done |= mutator.done
        missing = sorted(set(bspc) - done)
        if missing:
            raise ValueError(f"BSPC weights {missing} match no weight of the module")
        return out

    return transform
