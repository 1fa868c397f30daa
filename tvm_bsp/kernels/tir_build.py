"""Small helpers over TVM's TIR IRBuilder, shared by the kernel generators.

The generators build PrimFuncs with :mod:`tvm.script.ir_builder.tirx` instead of parsing
TVMScript, so that a kernel's signature, buffers and loop nest are composed in Python from
the parts a cell, a weight form and a target contribute. These helpers name what they
create (printed kernels stay readable) and keep the frequent two-line idioms to one call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

from tvm import tirx
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as T

Index = Sequence[tirx.Expr | int]


@contextlib.contextmanager
def loop(frame, name: str) -> Iterator[tirx.Var]:
    """Enter a loop frame (``T.serial(n)``, ``T.vectorized(n)``, ...) and name its variable."""
    with frame as var:
        IRBuilder.name(name, var)
        yield var


@contextlib.contextmanager
def when(cond: tirx.PrimExpr) -> Iterator[None]:
    """``if cond:`` without an else branch."""
    with T.If(cond), T.Then():
        yield


def if_else(cond: tirx.PrimExpr, then: Callable[[], None], other: Callable[[], None]) -> None:
    """``if cond: then() else: other()``."""
    with T.If(cond):
        with T.Then():
            then()
        with T.Else():
            other()


def store(buffer: tirx.Buffer, value: tirx.PrimExpr, index: Index) -> None:
    """``buffer[index] = value``."""
    T.buffer_store(buffer, value, list(index))


def vector_store(
    width: int, buffer_index: Callable[[tirx.Var], tuple[tirx.Buffer, Index]], value
) -> None:
    """``for v in T.vectorized(width): buffer[index(v)] = value(v)``."""
    with loop(T.vectorized(width), "v") as v:
        buffer, index = buffer_index(v)
        store(buffer, value(v), index)


def local(name: str, size: int, dtype: str = "float32") -> tirx.Buffer:
    """A ``local``-scope scratch buffer of ``size`` values."""
    return IRBuilder.name(name, T.alloc_buffer((size,), dtype, scope="local"))


def shared(name: str, size: int, dtype: str = "float32") -> tirx.Buffer:
    """A ``shared``-scope buffer of ``size`` values (OpenCL ``__local``: one per work-group)."""
    return IRBuilder.name(name, T.alloc_buffer((size,), dtype, scope="shared"))


def scratch(name: str, shape: Sequence, dtype: str = "float32") -> tirx.Buffer:
    """A global scratch buffer of the kernel."""
    return IRBuilder.name(name, T.alloc_buffer(tuple(shape), dtype))


class Params:
    """Collects a PrimFunc's parameters in order: each is a handle and its matched buffer."""

    def __init__(self) -> None:
        self.buffers: dict[str, tirx.Buffer] = {}

    def __call__(self, name: str, shape: Sequence, dtype: str = "float32") -> tirx.Buffer:
        """Add parameter ``name`` (handle ``name_h``) matched as ``shape`` / ``dtype``."""
        handle = T.arg(f"{name}_h", T.handle())
        buffer = IRBuilder.name(name, T.match_buffer(handle, tuple(shape), dtype))
        self.buffers[name] = buffer
        return buffer


def size_var(name: str) -> tirx.Var:
    """A symbolic ``int64`` extent (number of frames, sequences, array lengths)."""
    return IRBuilder.name(name, T.int64())


def build(name: str, body: Callable[[], None]) -> tirx.PrimFunc:
    """The PrimFunc ``name`` whose parameters and statements ``body()`` emits."""
    with IRBuilder() as builder, T.prim_func():
        T.func_name(name)
        body()
    return builder.get()


def attr_region(key: str) -> contextlib.AbstractContextManager:
    """``with T.attr(0, key, 1):`` (parallel launch point, barrier of a phase)."""
    return T.attr(0, key, 1)
