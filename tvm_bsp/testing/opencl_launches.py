"""Recover the host launch sequence from the IR that ``SplitHostDevice`` leaves.

After ``SplitHostDevice`` the host function of an OpenCL build consists of kernel launches
(``T.call_ffi_kernel("main_kernel", A.data, ..., grid/block extents)``), possibly inside serial
host loops, and each device kernel is a separate PrimFunc carrying
``tirx.kernel_launch_params``. :func:`recover_launches` walks the host function and maps every
kernel argument back to a PrimFunc parameter, a host allocation or a scalar expression
(:mod:`tvm_bsp.testing.opencl_host_expr`), so that :mod:`tvm_bsp.testing.opencl_program` can
enqueue the same launches through pyopencl. Host code that does more than launch kernels is
refused with :class:`NotImplementedError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from tvm_bsp.testing.opencl_host_expr import with_binds

__all__ = [
    "HostLoop",
    "KernelLaunch",
    "device_kernels",
    "find_host_entry",
    "launch_count",
    "recover_launches",
]


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
    """Kernel launches in a recovered launch list, loops counted once (static size).

    Parameters
    ----------
    items : sequence of KernelLaunch or HostLoop
        A launch list as :func:`recover_launches` returns it.

    Returns
    -------
    int
        The number of :class:`KernelLaunch` items, nested loop bodies included once each.
    """
    return sum(launch_count(i.body) if isinstance(i, HostLoop) else 1 for i in items)


def find_host_entry(lowered: Any, func_name: str) -> Any:
    """The host function of a lowered module.

    Parameters
    ----------
    lowered : tvm.IRModule
        The module right after ``SplitHostDevice``.
    func_name : str
        The entry's name; a module with a single host function returns that one.

    Returns
    -------
    tvm.tirx.PrimFunc
        The host function.

    Raises
    ------
    ValueError
        If there is no function ``func_name`` and more than one host function.
    """
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


def device_kernels(lowered: Any) -> dict[str, Any]:
    """The device kernels of a lowered module by name.

    Parameters
    ----------
    lowered : tvm.IRModule
        The module right after ``SplitHostDevice``.

    Returns
    -------
    dict of str to tvm.tirx.PrimFunc
        Every function carrying ``tirx.kernel_launch_params``.
    """
    return {
        gv.name_hint: f
        for gv, f in lowered.functions.items()
        if "tirx.kernel_launch_params" in (f.attrs or {})
    }


def recover_launches(
    entry: Any, kernels: dict[str, Any]
) -> tuple[list[KernelLaunch | HostLoop], dict[str, tuple[tuple, str]]]:
    """Walk the host function: map kernel-call arguments back to PrimFunc parameters.

    Parameters
    ----------
    entry : tvm.tirx.PrimFunc
        The host function (:func:`find_host_entry`).
    kernels : dict of str to tvm.tirx.PrimFunc
        The device kernels (:func:`device_kernels`).

    Returns
    -------
    (list, dict)
        The launches in program order (:class:`KernelLaunch` and :class:`HostLoop` items) and
        the host-allocated global buffers, ``name -> (shape exprs, dtype)``.

    Raises
    ------
    NotImplementedError
        If the host function does more than launch kernels (parallel host loops, host stores,
        dynamic shared memory, buffers that do not trace back to a parameter).
    ValueError
        If it launches no kernel.
    """
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
                args.append(("scalar", with_binds(a, binds), str(kp.ty.dtype)))
        extents = tuple(with_binds(e, binds) for e in rest[len(kparams) :])
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
                with_binds(s.min, binds),
                with_binds(s.extent, binds),
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
            allocs[name] = (tuple(with_binds(d, binds) for d in ty.shape), str(ty.dtype))
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
