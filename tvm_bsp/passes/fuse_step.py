"""FuseStep: the streaming ``step`` of kernel calls becomes one kernel (CPU targets).

After :func:`~tvm_bsp.passes.LowerRNN`, ``step`` is a straight line of ``call_tir`` (each
layer's input projection and sequence kernel, the head's layers), reshapes, tuple items and
the stack of the layers' final states. Each is a VM instruction per frame, each kernel call
passes its arguments through the packed-function API, and every intermediate is a fresh
tensor of the VM's allocator: together more than a 301x model's multiply-adds
(``bench_step_cost``). FuseStep writes the same kernels into one PrimFunc,
:data:`FUSED_NAME`, and leaves ``step`` a single ``call_tir``:

- every callee's parameters are declared on the fused kernel's buffers (their symbolic sizes
  bound to the actual ones) and its body placed in order, unchanged: the code that runs is
  the code of the kernels;
- intermediates become trailing *scratch* parameters (see :meth:`_Fusion.scratch`); a reshape
  is a buffer declared on the same data; a value that reaches an output through reshapes is
  computed straight into that output;
- the stack of the final states is a copy of each layer's state into its slice of the new
  state (``L x B x H`` floats a frame).

With more than one thread, the parts run in **one** parallel region (:func:`one_region`):
the threads are launched once a frame and meet at a barrier after each part, instead of a
launch per kernel. A function ``step_constants()`` returns the fused kernel's constant
arguments, so a runtime can call the kernel itself without the VM
(:class:`tvm_bsp.runtime.kernel_step.KernelStep`): ``fused_step(x_t, state, *constants,
y_t, new_state, *scratch)`` (the scratch shapes in the kernel's :data:`SCRATCH_ATTR`).
``forward`` is left alone. A ``step`` of another shape (an op without a
kernel, a stack along another axis) is left unfused.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import tvm
from tvm import relax, tirx

from tvm_bsp.passes.ir_utils import is_constant

#: The fused kernel's name (it carries the attribute ``tvm_bsp.fused_step``).
FUSED_NAME = "fused_step"
#: The Relax function that returns the fused kernel's constant arguments.
CONSTANTS_NAME = "step_constants"
#: The fused kernel's attribute listing its scratch parameters (JSON: shape, dtype each).
SCRATCH_ATTR = "tvm_bsp.scratch"

_LAUNCH = "pragma_parallel_launch_point"
_BARRIER = "pragma_parallel_barrier_when_finish"
_DECLARATIONS = (tirx.AllocBuffer, tirx.DeclBuffer, tirx.stmt.Bind)


class UnfusableError(Exception):
    """``step`` has a shape the fusion does not handle (it stays as it is)."""


def _i64(value: int) -> tirx.IntImm:
    return tirx.IntImm("int64", value)


def _size(shape) -> tirx.PrimExpr:
    out = _i64(1)
    for dim in shape:
        out = out * dim
    return out


class _Fusion:
    """The fused PrimFunc's parameters and statements, built binding by binding."""

    def __init__(self, mod: tvm.IRModule) -> None:
        self.mod = mod
        self.shape_vars: dict[tirx.Var, tirx.Var] = {}  # Relax shape var -> TIR var
        self.params: list[tirx.Buffer] = []
        self.stmts: list[tirx.Stmt] = []
        self.consts: list[relax.Expr] = []
        self.const_buffers: list[tirx.Buffer] = []
        self.env: dict[relax.Var, object] = {}  # value -> buffer (or tuple of buffers)
        self.parallel = False
        self.scratch_buffers: list[tirx.Buffer] = []
        self.scratch_types: list = []

    # ------------------------------------------------------------------ buffers
    def shape(self, ty) -> list:
        """A Relax tensor type's shape in TIR terms (static sizes as ``int32``)."""
        shape = getattr(ty, "shape", None)
        if shape is None or getattr(ty, "dtype", None) is None:
            raise UnfusableError(f"not a tensor of known shape: {ty}")
        out = []
        for dim in shape:
            if isinstance(dim, tirx.IntImm):
                out.append(tirx.IntImm("int32", int(dim)))
            elif isinstance(dim, tirx.Var):
                out.append(self.shape_vars.setdefault(dim, tirx.Var(dim.name, "int64")))
            else:
                raise UnfusableError(f"a shape expression {dim}")
        return out

    def param(self, name: str, ty) -> tirx.Buffer:
        buffer = tirx.decl_buffer(self.shape(ty), ty.dtype, name)
        self.params.append(buffer)
        return buffer

    def scratch(self, name: str, ty) -> tirx.Buffer:
        """An intermediate: a trailing parameter of the kernel, not an allocation inside it.

        The callees reach it through buffers declared on its data, which TIR's storage
        rewrite does not count as uses of an allocation (it would give a live intermediate's
        memory to a later one); a parameter is never rewritten, and a caller that keeps its
        buffers (:class:`~tvm_bsp.runtime.kernel_step.KernelStep`) allocates nothing a frame.
        """
        buffer = tirx.decl_buffer(self.shape(ty), ty.dtype, name)
        self.scratch_buffers.append(buffer)
        self.scratch_types.append(ty)
        return buffer

    def alias(self, source: tirx.Buffer, ty, name: str) -> tirx.Buffer:
        """A buffer of ``ty``'s shape on ``source``'s data (a reshape)."""
        if ty.dtype != source.dtype:
            raise UnfusableError("a reshape that changes the type")
        buffer = tirx.decl_buffer(self.shape(ty), source.dtype, name, data=source.data)
        self.stmts.append(tirx.DeclBuffer(buffer, data=source.data))
        return buffer

    def operand(self, expr: relax.Expr) -> tirx.Buffer:
        if is_constant(expr):
            for seen, buffer in zip(self.consts, self.const_buffers, strict=True):
                if seen.same_as(expr):  # forward and step share the constant objects
                    return buffer
            self.consts.append(expr)
            self.const_buffers.append(self.param(f"c{len(self.consts) - 1}", expr.ty))
            return self.const_buffers[-1]
        value = self.env.get(expr)
        if not isinstance(value, tirx.Buffer):
            raise UnfusableError(f"operand {expr} has no buffer")
        return value

    def bind(self, buffer: tirx.Buffer, param: tirx.Buffer, bound: set) -> None:
        """Declare the callee's ``param`` on ``buffer``'s data, its symbolic sizes bound to
        ``buffer``'s (so the callee's body runs as it is)."""
        if len(buffer.shape) != len(param.shape) or buffer.dtype != param.dtype:
            raise UnfusableError(f"{buffer.name} does not match parameter {param.name}")
        for mine, theirs in zip(buffer.shape, param.shape, strict=True):
            if isinstance(theirs, tirx.IntImm):
                if not isinstance(mine, tirx.IntImm) or int(mine) != int(theirs):
                    raise UnfusableError(f"{buffer.name}: {mine} where {param.name} has {theirs}")
            elif isinstance(theirs, tirx.Var):
                if theirs not in bound:
                    bound.add(theirs)
                    self.stmts.append(tirx.stmt.Bind(theirs, tirx.Cast(theirs.ty.dtype, mine)))
            else:
                raise UnfusableError(f"parameter {param.name} has a shape expression {theirs}")
        if not isinstance(param.elem_offset, tirx.IntImm) or int(param.elem_offset) != 0:
            raise UnfusableError(f"parameter {param.name} has an offset")
        self.stmts.append(tirx.DeclBuffer(param, data=buffer.data))

    def copy(self, dst: tirx.Buffer, src: tirx.Buffer, offset: tirx.PrimExpr) -> None:
        """``dst.flat[offset : offset + src.size] = src.flat``."""
        size = _size(src.shape)
        flat_dst = tirx.decl_buffer([_size(dst.shape)], dst.dtype, "dst_flat", data=dst.data)
        flat_src = tirx.decl_buffer([size], src.dtype, "src_flat", data=src.data)
        self.stmts.append(tirx.DeclBuffer(flat_dst, data=dst.data))
        self.stmts.append(tirx.DeclBuffer(flat_src, data=src.data))
        i = tirx.Var("i", "int64")
        body = tirx.BufferStore(flat_dst, tirx.BufferLoad(flat_src, [i]), [offset + i])
        self.stmts.append(tirx.For(i, _i64(0), size, tirx.ForKind.SERIAL, body))

    # ----------------------------------------------------------------- bindings
    def call(self, var: relax.Var, call: relax.Call, dests: dict) -> None:
        """A ``call_tir``: the callee's body on the fused kernel's buffers."""
        gv, args = call.args[0], list(call.args[1].fields)
        callee = self.mod[gv]
        if not isinstance(callee, tirx.PrimFunc) or len(call.args) > 2:
            raise UnfusableError(f"{gv} is not a plain call_tir")
        self.parallel |= bool(callee.attrs.get("tvm_bsp.parallel", False))
        tuple_out = isinstance(var.ty, relax.TupleType)
        out_tys = list(var.ty.fields) if tuple_out else [var.ty]
        outs = []
        for i, ty in enumerate(out_tys):
            make = dests.get((var, i) if tuple_out else var)
            outs.append(make(ty) if make else self.scratch(f"{var.name}_{i}", ty))
        buffers = [self.operand(a) for a in args] + outs
        if len(buffers) != len(callee.params):
            raise UnfusableError(f"{gv}: {len(callee.params)} parameters, {len(buffers)} buffers")
        bound: set = set()
        for buffer, param in zip(buffers, callee.params, strict=True):
            self.bind(buffer, param, bound)
        self.stmts.append(callee.body)
        self.env[var] = tuple(outs) if tuple_out else outs[0]

    def reshape(self, var: relax.Var, call: relax.Call, dests: dict) -> None:
        source, value = call.args[0], self.operand(call.args[0])
        if var in dests:
            self.env[var] = dests[var](var.ty)
            if source not in dests:  # not computed into the output (an input): copied
                self.copy(self.env[var], value, _i64(0))
        else:
            self.env[var] = self.alias(value, var.ty, var.name)

    def stack(self, var: relax.Var, call: relax.Call, dests: dict) -> None:
        if int(call.attrs.axis) != 0 or var not in dests:
            raise UnfusableError("a stack that is not along the first axis of an output")
        dst, offset = dests[var](var.ty), _i64(0)
        for item in call.args[0].fields:
            value = self.operand(item)
            self.copy(dst, value, offset)
            offset = offset + _size(value.shape)
        self.env[var] = dst


def _flat(stmts) -> list:
    out: list = []
    for stmt in stmts:
        out.extend(_flat(stmt.seq) if isinstance(stmt, tirx.SeqStmt) else [stmt])
    return out


def _has_parallel_loop(stmt: tirx.Stmt) -> bool:
    """Whether ``stmt`` holds a parallel loop (kernels nest For, If, Seq and attributes)."""
    if isinstance(stmt, tirx.For):
        return stmt.kind == tirx.ForKind.PARALLEL or _has_parallel_loop(stmt.body)
    if isinstance(stmt, tirx.SeqStmt):
        return any(_has_parallel_loop(s) for s in stmt.seq)
    if isinstance(stmt, tirx.IfThenElse):
        other = stmt.else_case
        return _has_parallel_loop(stmt.then_case) or (
            other is not None and _has_parallel_loop(other)
        )
    if isinstance(stmt, tirx.AttrStmt):
        return _has_parallel_loop(stmt.body)
    return False


def _on_one_thread(stmt: tirx.Stmt) -> tirx.Stmt:
    """``stmt`` run by one thread of a parallel region (a shared loop of two iterations,
    the second empty): serial code written by every thread would fight over cache lines."""
    i = tirx.Var("single", "int32")
    once = tirx.IfThenElse(i == tirx.IntImm("int32", 0), stmt, None)
    return tirx.For(i, tirx.IntImm("int32", 0), tirx.IntImm("int32", 2), tirx.ForKind.PARALLEL,
                    once)


def one_region(stmts: list) -> list:
    """The statements as one parallel region: declarations first (shared by the threads),
    then every statement as a phase of its own, a barrier after each.

    A sequence kernel's region (its time loop, a barrier per phase) opens into the outer
    one; a statement with a parallel loop (a mat-mat kernel) is shared out as it is; a
    serial statement (a state copy, a small serial kernel) runs on one thread.
    """
    flat = _flat(stmts)
    one, zero = tirx.IntImm("int32", 1), tirx.IntImm("int32", 0)
    phases = []
    for stmt in flat:
        if isinstance(stmt, _DECLARATIONS):
            continue
        if isinstance(stmt, tirx.AttrStmt) and stmt.attr_key == _LAUNCH:
            phases.append(stmt.body)
            continue
        shared = stmt if _has_parallel_loop(stmt) else _on_one_thread(stmt)
        phases.append(tirx.AttrStmt(zero, _BARRIER, one, shared))
    head = [s for s in flat if isinstance(s, _DECLARATIONS)]
    return [*head, tirx.AttrStmt(zero, _LAUNCH, one, tirx.SeqStmt(phases))]


def _destinations(fusion: _Fusion, bindings: list, outputs: list) -> dict:
    """Values computed straight into an output: ``{var or (call var, i): make(ty)}``."""
    dests: dict[object, Callable] = {}
    for i, out in enumerate(outputs):
        dests[out] = lambda ty, i=i: fusion.outputs[i]
    for binding in reversed(bindings):
        var, value = binding.var, binding.value
        if var not in dests:
            continue
        if isinstance(value, relax.Call) and value.op.name == "relax.reshape":
            source = value.args[0]
            if isinstance(source, relax.Var) and source not in dests and source in fusion.local:
                parent = dests[var]
                dests[source] = lambda ty, parent=parent, var=var: fusion.alias(
                    parent(var.ty), ty, f"{var.name}_view"
                )
        elif isinstance(value, relax.TupleGetItem):
            dests.setdefault((value.tuple_value, value.index), dests[var])
    return dests


def fuse_step(mod: tvm.IRModule, name: str = "step") -> tvm.IRModule:
    """``mod`` with ``name`` as one ``call_tir`` of :data:`FUSED_NAME` and a function
    :data:`CONSTANTS_NAME` (see the module docstring); ``mod`` itself if ``name`` is absent
    or has another shape.

    Parameters
    ----------
    mod : tvm.IRModule
        A module after :func:`~tvm_bsp.passes.LowerRNN` (CPU kernels).
    name : str
        The function to fuse.
    """
    if name not in [gv.name_hint for gv in mod.get_global_vars()]:
        return mod
    try:
        return _fuse(mod, name, mod[name])
    except UnfusableError:
        return mod


def _fuse(mod: tvm.IRModule, name: str, func: relax.Function) -> tvm.IRModule:
    body = func.body
    if not isinstance(body, relax.SeqExpr) or len(body.blocks) != 1:
        raise UnfusableError(f"{name} is not one dataflow block")
    bindings = list(body.blocks[0].bindings)
    if not bindings or not isinstance(bindings[-1].value, relax.Tuple):
        raise UnfusableError(f"{name} does not end in a tuple")
    if not bindings[-1].var.same_as(body.body):
        raise UnfusableError(f"{name} does not return its last binding")
    outputs = list(bindings[-1].value.fields)
    if not all(isinstance(o, relax.Var) for o in outputs):
        raise UnfusableError("an output is not a variable")
    fusion = _Fusion(mod)
    for p in func.params:
        fusion.env[p] = fusion.param(p.name, p.ty)
    fusion.local = {b.var for b in bindings}
    out_tys = [o.ty for o in outputs]
    fusion.outputs = [
        tirx.decl_buffer(fusion.shape(ty), ty.dtype, f"out{i}") for i, ty in enumerate(out_tys)
    ]
    dests = _destinations(fusion, bindings[:-1], outputs)
    for binding in bindings[:-1]:
        var, value = binding.var, binding.value
        op = getattr(value, "op", None)
        op_name = getattr(op, "name", None)
        if op_name == "relax.call_tir":
            fusion.call(var, value, dests)
        elif op_name == "relax.reshape":
            fusion.reshape(var, value, dests)
        elif op_name == "relax.stack":
            fusion.stack(var, value, dests)
        elif isinstance(value, relax.TupleGetItem):
            fusion.env[var] = fusion.env[value.tuple_value][value.index]
        else:
            raise UnfusableError(f"binding {var.name} has no kernel")
    for out, buffer in zip(outputs, fusion.outputs, strict=True):
        value = fusion.env.get(out)
        if not (isinstance(value, tirx.Buffer) and value.same_as(buffer)):
            raise UnfusableError(f"output {out.name} is not computed into its buffer")
    stmts = one_region(fusion.stmts) if fusion.parallel else fusion.stmts
    params = fusion.params + fusion.outputs + fusion.scratch_buffers
    prim = tirx.PrimFunc(params, tirx.SeqStmt(stmts))
    scratch = json.dumps([_shape_spec(t) for t in fusion.scratch_types])
    prim = prim.with_attr(
        {"tirx.noalias": True, "tvm_bsp.fused_step": True, SCRATCH_ATTR: scratch}
    )
    # a kernel used twice (two layers of one shape) defines its variables and buffers twice
    prim = tirx.transform.ConvertSSA()(tvm.IRModule({FUSED_NAME: prim}))[FUSED_NAME]
    return _with_fused_step(mod, name, func, prim, fusion.consts, out_tys, fusion.scratch_types)


def _shape_spec(ty) -> dict:
    """A scratch parameter's shape for the runtime: sizes, symbolic ones by name (``"B"``)."""
    dims = [int(d) if isinstance(d, tirx.IntImm) else str(d.name) for d in ty.shape]
    return {"shape": dims, "dtype": str(ty.dtype)}


def _with_fused_step(mod, name, func, prim, consts, out_tys, scratch_tys) -> tvm.IRModule:
    bb = relax.BlockBuilder(mod)
    gv = bb.add_func(prim, FUSED_NAME)
    with bb.function(CONSTANTS_NAME, []):
        bb.emit_func_output(relax.Tuple(consts))
    out = bb.get()
    step = relax.BlockBuilder()  # a name supply of its own: the parameters keep their names
    params = [relax.Var(p.name, p.ty) for p in func.params]
    with step.function(name, params):
        with step.dataflow():
            types = [relax.TensorType(t.shape, t.dtype) for t in [*out_tys, *scratch_tys]]
            call = step.emit(relax.call_tir(gv, [*params, *consts], types))
            items = [step.emit(relax.TupleGetItem(call, i)) for i in range(len(out_tys))]
            result = step.emit_output(relax.Tuple(items))
        step.emit_func_output(result)
    new = step.get()[name]
    if func.attrs is not None:
        new = new.with_attrs(func.attrs)
    out.update_func(out.get_global_var(name), new)
    return out


def FuseStep() -> tvm.transform.Pass:
    """The module pass of :func:`fuse_step` on ``step`` (see the module docstring).

    Returns
    -------
    tvm.transform.Pass
    """

    @tvm.transform.module_pass(opt_level=0, name="FuseStep")
    def transform(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return fuse_step(mod)

    return transform


__all__ = [
    "CONSTANTS_NAME",
    "FUSED_NAME",
    "SCRATCH_ATTR",
    "FuseStep",
    "UnfusableError",
    "fuse_step",
    "one_region",
]
