"""Run TVM-generated OpenCL kernels on a real OpenCL implementation (POCL) through pyopencl.

The TVM wheel ships without an OpenCL-enabled runtime, so a module built for an ``opencl``
target cannot be called through TVM on this machine. This module checks the generated kernels
another way:

1. The PrimFunc is compiled with :func:`tvm.compile` exactly as a user would (same target, same
   default pipeline). A pass instrument captures the IRModule right after ``SplitHostDevice``,
   the point where the host function consists of kernel launches
   (``T.call_ffi_kernel("main_kernel", A.data, ..., grid/block extents,
   launch_params=[...])``) and each device kernel is a separate PrimFunc with its parameter
   list and its ``tirx.kernel_launch_params``.
2. The OpenCL C source that TVM generated is taken from the compiled module
   (``Module.inspect_source()`` of the ``opencl`` import) and built by pyopencl, unchanged.
3. The host side is re-created: for every kernel launch of the host function, in program
   order, the arguments are mapped back to the PrimFunc's parameters (buffers become
   ``cl.Buffer``\\ s, scalars are evaluated from the PrimFunc's scalar parameters and symbolic
   shapes), the launch extents are evaluated the same way, and the kernel is enqueued with
   ``global = blockIdx extent * threadIdx extent`` and ``local = threadIdx extent`` per
   dimension.

So the device code that runs is TVM's, on a real OpenCL implementation (POCL on the CPU); the
host-side launch is a re-creation from the lowered IR, not TVM's own OpenCL runtime. Serial host
loops around kernel launches (e.g. the time loop of :mod:`tvm_bsp.ops.rnn_gpu`) are re-created
too: the loop variable is bound while the body's launches are enqueued, its bounds are
evaluated from the scalar parameters and symbolic shapes, and the in-order queue orders the
launches of consecutive iterations. Other host code (parallel or unrolled host loops,
host-side stores, dynamic shared memory) is refused with :class:`NotImplementedError` rather
than guessed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "HostLoop",
    "KernelLaunch",
    "OpenCLProgram",
    "build_opencl_program",
    "opencl_available",
    "opencl_target",
    "run_opencl_prim_func",
    "run_relax_function",
]


@functools.cache
def opencl_available() -> bool:
    """Whether pyopencl is importable and sees at least one OpenCL device.

    Returns
    -------
    bool
        ``True`` when :func:`run_opencl_prim_func` can run (``scripts/setup_opencl.sh``
        installs POCL and pyopencl).
    """
    try:
        import pyopencl as cl
    except ImportError:
        return False
    try:
        return any(p.get_devices() for p in cl.get_platforms())
    except Exception:  # no ICD / platform errors
        return False


def opencl_target(device: str = "mali", host: str | dict | None = None) -> Any:
    """An OpenCL target with an LLVM host, in the dict form TVM 0.27 accepts.

    Parameters
    ----------
    device : str
        The ``device`` attribute (``"mali"``; Adreno has its own pipeline with textures that
        this runner does not support).
    host : str or dict, optional
        Host target; defaults to ``"llvm"``.

    Returns
    -------
    tvm.target.Target
        ``Target({"kind": "opencl", "device": device}, host=host)``.
    """
    import tvm

    return tvm.target.Target({"kind": "opencl", "device": device}, host=host or "llvm")


@dataclasses.dataclass(frozen=True)
class KernelLaunch:
    """One kernel launch of the host function, as recovered from the lowered IR.

    Attributes
    ----------
    kernel : str
        Kernel name (``main_kernel``, ``main_kernel_1``, ...), as in the OpenCL source.
    args : tuple
        One entry per kernel parameter: ``("param", i)`` for the PrimFunc's i-th buffer
        parameter, ``("alloc", name)`` for a host-allocated global buffer, ``("scalar", expr,
        dtype)`` for a scalar argument (a TIR expression evaluated at launch time).
    launch_params : tuple of str
        ``tirx.kernel_launch_params`` of the kernel (``blockIdx.x``, ``threadIdx.x``, ...).
    extents : tuple
        TIR expressions of the launch extents, in the order of ``launch_params``.
    """

    kernel: str
    args: tuple
    launch_params: tuple[str, ...]
    extents: tuple


@dataclasses.dataclass(frozen=True)
class HostLoop:
    """A serial host loop around kernel launches, as recovered from the lowered IR.

    Attributes
    ----------
    var : tvm.tirx.Var
        The loop variable (scalar kernel arguments and extents may use it).
    start, extent : tuple or TIR expression
        Bounds, evaluated like launch extents when the loop is reached.
    body : tuple
        :class:`KernelLaunch` and nested :class:`HostLoop` items, in program order.
    """

    var: Any
    start: Any
    extent: Any
    body: tuple


def launch_count(items: Sequence[Any]) -> int:
    """Kernel launches in a recovered launch list, loops counted once (static size)."""
    return sum(launch_count(i.body) if isinstance(i, HostLoop) else 1 for i in items)


@dataclasses.dataclass
class OpenCLProgram:
    """TVM-generated OpenCL source plus the host launch sequence recovered from the IR.

    Attributes
    ----------
    source : str
        OpenCL C source generated by TVM (all kernels of the module).
    params : list
        The PrimFunc's parameters (TIR ``Var``\\ s): buffers (``BufferType``) or scalars.
    launches : list of KernelLaunch
        Kernel launches in host program order.
    allocs : dict
        Host-allocated global buffers used between kernels: name -> (shape exprs, dtype).
    lowered : tvm.IRModule
        The captured IRModule (host + device functions) right after ``SplitHostDevice``.
    """

    source: str
    params: list
    launches: list[KernelLaunch | HostLoop]
    allocs: dict
    lowered: Any

    def run(
        self,
        args: Sequence[np.ndarray | int | float],
        out_indices: Sequence[int] | None = None,
        *,
        device: Any | None = None,
    ) -> list[np.ndarray]:
        """Execute the kernels on an OpenCL device.

        Parameters
        ----------
        args : sequence of numpy.ndarray or scalars
            One value per PrimFunc parameter, in order (destination passing: outputs are
            arrays too; their content is uploaded, so kernels that accumulate see it).
        out_indices : sequence of int, optional
            Indices of ``args`` to read back; defaults to the last buffer parameter.
        device : pyopencl.Device, optional
            Device to use; default: the first device of the first platform that has one.

        Returns
        -------
        list of numpy.ndarray
            The read-back buffers, in the order of ``out_indices``.
        """
        import pyopencl as cl

        if len(args) != len(self.params):
            raise ValueError(f"expected {len(self.params)} arguments, got {len(args)}")
        buffer_idx = [i for i, p in enumerate(self.params) if _is_buffer_param(p)]
        if out_indices is None:
            out_indices = buffer_idx[-1:]
        env = _bind_params(self.params, args)

        if device is None:
            device = next(d for p in cl.get_platforms() for d in p.get_devices())
        ctx = cl.Context([device])
        queue = cl.CommandQueue(ctx)
        prog = cl.Program(ctx, self.source).build()

        host = {}
        cl_bufs: dict[Any, Any] = {}
        mf = cl.mem_flags
        for i in buffer_idx:
            ty = self.params[i].ty
            arr = np.ascontiguousarray(args[i], dtype=_np_dtype(ty.dtype))
            want = tuple(_eval(s, env) for s in ty.shape)
            if arr.shape != want:
                raise ValueError(f"argument {i} has shape {arr.shape}, the PrimFunc wants {want}")
            host[i] = arr.copy()
            if arr.nbytes == 0:  # an empty tensor (e.g. zero frames): nothing to upload
                cl_bufs[("param", i)] = cl.Buffer(ctx, mf.READ_WRITE, size=1)
            else:
                cl_bufs[("param", i)] = cl.Buffer(
                    ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, size=arr.nbytes, hostbuf=host[i]
                )
        for name, (shape, dtype) in self.allocs.items():
            nbytes = math.prod(_eval(s, env) for s in shape) * np.dtype(_np_dtype(dtype)).itemsize
            cl_bufs[("alloc", name)] = cl.Buffer(ctx, mf.READ_WRITE, size=max(nbytes, 1))

        kernels: dict[str, Any] = {}

        def enqueue(launch: KernelLaunch, env: list) -> None:
            if launch.kernel not in kernels:
                kernels[launch.kernel] = cl.Kernel(prog, launch.kernel)
            kernel = kernels[launch.kernel]
            kargs = []
            for a in launch.args:
                if a[0] == "scalar":
                    kargs.append(np.dtype(_np_dtype(a[2])).type(_eval(a[1], env)))
                else:
                    kargs.append(cl_bufs[a])
            grid, block = [1, 1, 1], [1, 1, 1]
            for tag, ext in zip(launch.launch_params, launch.extents, strict=True):
                value = _eval(ext, env)
                scope, _, axis = tag.partition(".")
                dim = "xyz".index(axis)
                (grid if scope == "blockIdx" else block)[dim] = value
            if min(grid) <= 0:
                return  # an empty grid launches nothing (e.g. zero sequences)
            global_size = tuple(g * b for g, b in zip(grid, block, strict=True))
            kernel(queue, global_size, tuple(block), *kargs)

        def execute(items: Sequence[Any], env: list) -> None:
            for item in items:
                if isinstance(item, HostLoop):
                    start, extent = int(_eval(item.start, env)), int(_eval(item.extent, env))
                    for value in range(start, start + extent):
                        execute(item.body, [*env, (item.var, value)])
                else:
                    enqueue(item, env)

        execute(self.launches, env)
        queue.finish()

        outs = []
        for i in out_indices:
            if ("param", i) not in cl_bufs:
                raise ValueError(f"argument {i} is not a buffer parameter")
            res = np.empty_like(host[i])
            if res.nbytes:
                cl.enqueue_copy(queue, res, cl_bufs[("param", i)])
            outs.append(res)
        queue.finish()
        return outs


def build_opencl_program(
    prim_func_or_mod: Any, target: Any | None = None, func_name: str = "main"
) -> OpenCLProgram:
    """Compile with :func:`tvm.compile` and recover the OpenCL source and host launches.

    Parameters
    ----------
    prim_func_or_mod : tvm.tirx.PrimFunc or tvm.IRModule
        A scheduled PrimFunc (thread-bound loops) or an IRModule holding it.
    target : tvm.target.Target, optional
        An OpenCL target with a host; default :func:`opencl_target`.
    func_name : str
        The entry function of an IRModule.

    Returns
    -------
    OpenCLProgram
        Source, parameters, launches; call :meth:`OpenCLProgram.run`.

    Raises
    ------
    ValueError
        If no OpenCL device module was produced (a PrimFunc without thread bindings silently
        becomes host code).
    NotImplementedError
        If the host function does more than launch kernels.
    """
    import tvm

    target = opencl_target() if target is None else tvm.target.Target(target)
    if target.kind.name != "opencl":
        raise ValueError(f"not an OpenCL target: {target}")
    mod = prim_func_or_mod

    captured: dict[str, Any] = {}

    @tvm.instrument.pass_instrument
    class _Capture:
        def run_after_pass(self, ir_mod: Any, info: Any) -> None:
            if info.name.endswith("SplitHostDevice"):
                captured["mod"] = ir_mod

    cur = tvm.transform.PassContext.current()
    with tvm.transform.PassContext(
        opt_level=cur.opt_level,
        required_pass=list(cur.required_pass),
        disabled_pass=list(cur.disabled_pass),
        instruments=[*cur.instruments, _Capture()],
        config=dict(cur.config),
    ):
        ex = tvm.compile(mod, target=target)
    if "mod" not in captured:
        raise RuntimeError("SplitHostDevice did not run; cannot recover the kernel launches")
    lowered = captured["mod"]

    sources = [m.inspect_source() for m in _walk_modules(ex.mod) if m.kind == "opencl"]
    if not sources:
        raise ValueError(
            "no OpenCL device module was generated: bind loops to blockIdx/threadIdx "
            "(an unbound PrimFunc compiled for opencl becomes host code)"
        )
    entry = _find_entry(lowered, func_name)
    kernels = {
        gv.name_hint: f
        for gv, f in lowered.functions.items()
        if "tirx.kernel_launch_params" in (f.attrs or {})
    }
    launches, allocs = _recover_launches(entry, kernels)
    return OpenCLProgram(
        source="\n".join(sources),
        params=list(entry.params),
        launches=launches,
        allocs=allocs,
        lowered=lowered,
    )


def run_opencl_prim_func(
    prim_func_or_mod: Any,
    target: Any | None,
    args: Sequence[np.ndarray | int | float],
    out_indices: Sequence[int] | None = None,
    *,
    func_name: str = "main",
) -> list[np.ndarray]:
    """Compile a PrimFunc for OpenCL with TVM and run its generated kernels on POCL.

    The kernels' OpenCL C source is TVM's own output; the host-side launch (buffer binding,
    grid and work-group sizes) is re-created from the IR lowered by the same compilation (see
    the module docstring).

    Parameters
    ----------
    prim_func_or_mod : tvm.tirx.PrimFunc or tvm.IRModule
        Scheduled PrimFunc with ``blockIdx``/``threadIdx`` bindings.
    target : tvm.target.Target or dict or None
        OpenCL target with host, e.g. ``Target({"kind": "opencl", "device": "mali"},
        host="llvm")``; ``None`` uses :func:`opencl_target`.
    args : sequence of numpy.ndarray or scalars
        One value per PrimFunc parameter (inputs, then outputs, destination passing).
    out_indices : sequence of int, optional
        Which ``args`` to return after the run; default the last buffer parameter.
    func_name : str
        Entry function name when an IRModule is given.

    Returns
    -------
    list of numpy.ndarray
        Output arrays in the order of ``out_indices``.
    """
    program = build_opencl_program(prim_func_or_mod, target, func_name=func_name)
    return program.run(args, out_indices)


def run_relax_function(
    mod: Any,
    func_name: str,
    args: Sequence[np.ndarray],
    target: Any,
    *,
    programs: dict | None = None,
) -> Any:
    """Run a lowered Relax function whose ``call_tir`` kernels are OpenCL, on POCL.

    A small interpreter for the modules :func:`tvm_bsp.passes.rnn_pipeline` produces: it walks
    the function's bindings; every ``call_tir`` runs its PrimFunc through
    :func:`build_opencl_program` (TVM's OpenCL code, host side re-created), ``reshape`` /
    ``stack`` / ``flip`` / ``concat`` / tuples are evaluated with numpy. Anything else raises
    :class:`NotImplementedError`.

    Parameters
    ----------
    mod : tvm.IRModule
        The lowered Relax module (before ``tvm.compile``).
    func_name : str
        The Relax function to run (e.g. ``"forward"``, ``"step"``).
    args : sequence of numpy.ndarray
        One array per parameter of the function.
    target : tvm.target.Target
        OpenCL target whose host this machine can compile for (e.g.
        ``resolve_target("opencl-mali", host="host")``).
    programs : dict, optional
        Cache of built programs by kernel name, shared across calls.

    Returns
    -------
    numpy.ndarray or tuple
        The function's result (tuples as Python tuples).
    """
    import tvm
    from tvm import relax

    func = mod[func_name]
    if len(args) != len(func.params):
        raise ValueError(f"{func_name} takes {len(func.params)} arguments, got {len(args)}")
    programs = {} if programs is None else programs
    values: list[tuple[Any, Any]] = []
    env: list[tuple[Any, int | float]] = []

    def shape_of(ty: Any) -> tuple[int, ...]:
        return tuple(int(_eval(d, env)) for d in ty.shape)

    for p, a in zip(func.params, args, strict=True):
        a = np.ascontiguousarray(a, np.float32)
        dims = p.ty.shape
        if len(dims) != a.ndim:
            raise ValueError(f"parameter {p.name}: rank {a.ndim} != {len(dims)}")
        for d, n in zip(dims, a.shape, strict=True):
            if isinstance(d, tvm.ir.expr.Var) and not any(d.same_as(v) for v, _ in env):
                env.append((d, int(n)))
        if shape_of(p.ty) != a.shape:
            raise ValueError(f"parameter {p.name}: shape {a.shape}, expected {shape_of(p.ty)}")
        values.append((p, a))

    def value(expr: Any) -> Any:
        if isinstance(expr, relax.Var):
            for v, val in values:
                if v.same_as(expr):
                    return val
            raise NotImplementedError(f"unbound Relax variable {expr.name}")
        if isinstance(expr, tvm.ir.expr.Constant):
            return expr.value.numpy()
        if isinstance(expr, relax.Tuple):
            return tuple(value(f) for f in expr.fields)
        if isinstance(expr, relax.TupleGetItem):
            return value(expr.tuple_value)[expr.index]
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            return call(expr)
        raise NotImplementedError(f"Relax expression {type(expr).__name__} is not supported")

    def call(expr: Any) -> Any:
        name = expr.op.name
        if name == "relax.call_tir":
            gv, operands = expr.args[0], value(expr.args[1])
            key = gv.name_hint
            if key not in programs:
                prim = mod[gv].with_attr("global_symbol", "main")
                programs[key] = build_opencl_program(prim, target)
            outs_ty = expr.ty_args[0]
            fields = list(outs_ty.fields) if hasattr(outs_ty, "fields") else [outs_ty]
            outs = [np.full(shape_of(t), np.nan, np.float32) for t in fields]
            first = len(operands)
            res = programs[key].run([*operands, *outs], list(range(first, first + len(outs))))
            return tuple(res) if hasattr(outs_ty, "fields") else res[0]
        if name == "relax.reshape":
            return value(expr.args[0]).reshape(shape_of(expr.ty))
        if name == "relax.stack":
            return np.stack(value(expr.args[0]), axis=int(expr.attrs.axis))
        if name == "relax.flip":  # reverse directions of bidirectional layers
            return np.ascontiguousarray(np.flip(value(expr.args[0]), int(expr.attrs.axis)))
        if name == "relax.concat":
            return np.concatenate(value(expr.args[0]), axis=int(expr.attrs.axis))
        raise NotImplementedError(f"Relax operator {name} is not supported by the runner")

    body = func.body
    for block in body.blocks:
        for binding in block.bindings:
            if not isinstance(binding, relax.VarBinding):
                raise NotImplementedError(f"binding {type(binding).__name__} is not supported")
            values.append((binding.var, value(binding.value)))
    return value(body.body)


# ----------------------------------------------------------------------------------------------
# IR recovery
# ----------------------------------------------------------------------------------------------


def _walk_modules(mod: Any) -> list[Any]:
    out, stack = [], [mod]
    while stack:
        m = stack.pop()
        out.append(m)
        stack.extend(m.imports)
    return out


def _find_entry(lowered: Any, func_name: str) -> Any:
    host = []
    for gv, f in lowered.functions.items():
        if "tirx.kernel_launch_params" in (f.attrs or {}):
            continue
        if gv.name_hint == func_name:
            return f
        host.append(f)
    if len(host) == 1:
        return host[0]
    names = [gv.name_hint for gv in lowered.functions]
    raise ValueError(f"no function {func_name!r} in the lowered module ({names})")


def _is_buffer_param(p: Any) -> bool:
    import tvm

    return isinstance(p.ty, tvm.tirx.buffer.BufferType)


def _np_dtype(dtype: Any) -> str:
    s = str(dtype)
    if s == "bool":
        return "bool"
    if s.startswith(("float", "int", "uint")):
        return s
    raise NotImplementedError(f"dtype {s} is not supported by the OpenCL runner")


def _recover_launches(entry: Any, kernels: dict[str, Any]) -> tuple[list[KernelLaunch], dict]:
    """Walk the host function: map kernel-call arguments back to PrimFunc parameters."""
    import tvm
    from tvm.tirx import stmt as S

    params = list(entry.params)
    decl_data: list[tuple[Any, Any]] = []  # (buffer var, data expr) of DeclBuffer views
    allocs: dict[str, tuple[tuple, str]] = {}
    alloc_vars: list[tuple[Any, str]] = []
    binds: list[tuple[Any, Any]] = []
    launches: list[Any] = []  # the list the current loop body appends to

    def root_of(ptr: Any) -> tuple:
        if not (isinstance(ptr, tvm.ir.Call) and ptr.op.name == "tirx.buffer_data"):
            raise NotImplementedError(f"kernel pointer argument {ptr} is not a buffer's data")
        var = ptr.args[0]
        for i, p in enumerate(params):
            if var.same_as(p):
                return ("param", i)
        for v, name in alloc_vars:
            if var.same_as(v):
                return ("alloc", name)
        for v, data in decl_data:
            if var.same_as(v):
                return root_of(data)
        raise NotImplementedError(f"cannot trace buffer {var} back to a PrimFunc parameter")

    def launch(call: Any) -> None:
        name = call.args[0].value
        if name not in kernels:
            raise NotImplementedError(f"call to unknown device function {name}")
        kfunc = kernels[name]
        tags = tuple(str(t) for t in kfunc.attrs["tirx.kernel_launch_params"])
        if any(not t.startswith(("blockIdx.", "threadIdx.")) for t in tags):
            raise NotImplementedError(f"launch parameters {tags} (dynamic shared memory?)")
        kparams = list(kfunc.params)
        rest = list(call.args[1:])
        if len(rest) != len(kparams) + len(tags):
            raise NotImplementedError(f"kernel {name}: {len(rest)} call args, {kparams} + {tags}")
        args = []
        for kp, a in zip(kparams, rest[: len(kparams)], strict=True):
            if isinstance(kp.ty, tvm.ir.type.PointerType):
                args.append(root_of(a))
            else:
                args.append(("scalar", _substitute_binds(a, binds), str(kp.ty.dtype)))
        extents = tuple(_substitute_binds(e, binds) for e in rest[len(kparams) :])
        launches.append(KernelLaunch(name, tuple(args), tags, extents))

    def loop(s: Any) -> None:
        nonlocal launches
        if s.kind != S.ForKind.SERIAL or s.thread_binding is not None:
            raise NotImplementedError(f"host loop of kind {s.kind} is not supported:\n{s}")
        outer, launches = launches, []
        n_binds = len(binds)
        visit(s.body)
        body, launches = tuple(launches), outer
        del binds[n_binds:]  # binds inside the body are scoped to it (re-bound per iteration)
        launches.append(
            HostLoop(
                s.loop_var,
                _substitute_binds(s.min, binds),
                _substitute_binds(s.extent, binds),
                body,
            )
        )

    def visit(s: Any) -> None:
        if isinstance(s, S.SeqStmt):
            for c in s.seq:
                visit(c)
        elif isinstance(s, S.DeclBuffer):
            if s.data is not None:
                decl_data.append((s.buffer, s.data))
        elif isinstance(s, S.AllocBuffer):
            ty = s.buffer.ty
            if str(ty.storage_scope) not in ("global", ""):
                raise NotImplementedError(f"host allocation in scope {ty.storage_scope}")
            name = f"{s.buffer.name}_{len(allocs)}"
            allocs[name] = (tuple(_substitute_binds(d, binds) for d in ty.shape), str(ty.dtype))
            alloc_vars.append((s.buffer, name))
        elif isinstance(s, S.Bind):
            binds.append((s.var, s.value))
        elif isinstance(s, S.AssertStmt):
            pass  # argument checks of the host function
        elif isinstance(s, S.AttrStmt):
            visit(s.body)
        elif isinstance(s, S.For):
            loop(s)
        elif isinstance(s, S.Evaluate):
            v = s.value
            if isinstance(v, tvm.ir.Call) and v.op.name == "tirx.call_ffi_kernel":
                launch(v)
            elif not isinstance(v, tvm.tirx.expr.IntImm):
                raise NotImplementedError(f"host statement {v} is not a kernel launch")
        else:
            raise NotImplementedError(
                f"host code {type(s).__name__} is not supported by the OpenCL runner:\n{s}"
            )

    visit(entry.body)
    if not launch_count(launches):
        raise ValueError("the host function launches no kernel")
    return launches, allocs


def _substitute_binds(expr: Any, binds: list[tuple[Any, Any]]) -> Any:
    """Return ``(expr, binds)`` so :func:`_eval` can resolve host-side ``Bind`` variables."""
    return (expr, tuple(binds)) if binds else expr


def _bind_params(params: list, args: Sequence[Any]) -> list[tuple[Any, int | float]]:
    """Environment for :func:`_eval`: scalar parameters and symbolic shape variables."""
    from tvm.ir.expr import Var

    env: list[tuple[Any, int | float]] = []
    for p, a in zip(params, args, strict=True):
        if _is_buffer_param(p):
            shape = np.shape(a)
            if len(shape) != len(p.ty.shape):
                raise ValueError(f"parameter {p.name}: rank {len(shape)} != {len(p.ty.shape)}")
            for dim, n in zip(p.ty.shape, shape, strict=True):
                if isinstance(dim, Var) and not any(dim.same_as(v) for v, _ in env):
                    env.append((dim, int(n)))
        else:
            env.append((p, np.asarray(a).item()))
    return env


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "Add": operator.add,
    "Sub": operator.sub,
    "Mul": operator.mul,
    "FloorDiv": operator.floordiv,
    "FloorMod": operator.mod,
    "Div": lambda a, b: int(a / b) if isinstance(a, int) and isinstance(b, int) else a / b,
    "Mod": lambda a, b: int(math.fmod(a, b)) if isinstance(a, int) else math.fmod(a, b),
    "Min": min,
    "Max": max,
    "EQ": operator.eq,
    "NE": operator.ne,
    "LT": operator.lt,
    "LE": operator.le,
    "GT": operator.gt,
    "GE": operator.ge,
    "And": lambda a, b: bool(a) and bool(b),
    "Or": lambda a, b: bool(a) or bool(b),
}


def _eval(expr: Any, env: list[tuple[Any, int | float]]) -> Any:
    """Evaluate a host-side TIR scalar expression (extents, scalar kernel arguments)."""
    from tvm.ir.expr import Var
    from tvm.tirx import expr as E

    if isinstance(expr, tuple):  # (expr, binds) from _substitute_binds
        inner, binds = expr
        local = list(env)
        for v, val in binds:
            local.append((v, _eval(val, local)))
        return _eval(inner, local)
    if isinstance(expr, int | float):
        return expr
    if isinstance(expr, E.IntImm):
        return int(expr.value)
    if isinstance(expr, E.FloatImm):
        return float(expr.value)
    if isinstance(expr, Var):
        for v, val in reversed(env):
            if v.same_as(expr):
                return val
        raise NotImplementedError(f"unbound variable {expr} in a host expression")
    kind = type(expr).__name__
    if kind in _BINOPS:
        return _BINOPS[kind](_eval(expr.a, env), _eval(expr.b, env))
    if isinstance(expr, E.Not):
        return not _eval(expr.a, env)
    if isinstance(expr, E.Cast):
        val = _eval(expr.value, env)
        return float(val) if str(expr.dtype).startswith("float") else int(val)
    if isinstance(expr, E.Select):
        cond = _eval(expr.condition, env)
        return _eval(expr.true_value if cond else expr.false_value, env)
    raise NotImplementedError(f"cannot evaluate host expression {expr} ({kind})")
