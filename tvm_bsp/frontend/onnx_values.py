"""Abstract values of the ONNX importer and the glue ops that move them around.

The importer (:mod:`tvm_bsp.frontend.onnx_import`) runs an ONNX graph *symbolically*: every
tensor becomes one of

:class:`Const`
    a known array (initializers, ``Constant`` nodes, glue folded on constants);
:class:`Seq`
    the activation sequence, as labelled axes (``T`` time, ``B`` batch, ``F`` features,
    ``D`` directions and ``H`` per-direction features of a recurrent output, ``1`` a unit
    axis, ``T*B`` time and batch flattened, ``X0`` / ``X1`` the two leading axes of the graph
    input before the first recurrent node tells which one is time);
:class:`ShapeVec`
    a shape vector (``Shape`` of a sequence, then ``Gather`` / ``Unsqueeze`` / ``Concat``), whose
    entries may be symbolic (``T``, ``B``);
:class:`StateIn` / :class:`StateOut`
    rows of an initial-state graph input, and the final states of recurrent layers
    (``Y_h`` / ``Y_c``, joined by ``Concat``);
:class:`Input`
    a graph input whose role (sequence or state) its first consumer decides;
:class:`Zeros`
    zeros of a symbolic shape (an exporter's default initial state).

A sequence is consumed once (``id`` must be the newest): graphs that branch are refused.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


class UnsupportedOnnxError(ValueError):
    """An ONNX node or graph (named in the message) that the importer cannot translate."""


@dataclass(frozen=True)
class Dim:
    """A dimension ``coeff * prod(syms)``; ``syms`` are symbolic sizes such as ``T``, ``B``."""

    coeff: int
    syms: tuple[str, ...] = ()

    def __mul__(self, other: Dim) -> Dim:
        return Dim(self.coeff * other.coeff, tuple(sorted(self.syms + other.syms)))

    def divides(self, other: Dim) -> bool:
        """Whether ``other / self`` is a (possibly symbolic) integer."""
        if self.coeff == 0 or other.coeff % self.coeff:
            return False
        return not (Counter(self.syms) - Counter(other.syms))

    def __truediv__(self, other: Dim) -> Dim:
        rest = Counter(self.syms) - Counter(other.syms)
        return Dim(self.coeff // other.coeff, tuple(sorted(rest.elements())))

    @property
    def static(self) -> bool:
        return not self.syms

    def __str__(self) -> str:
        parts = ([str(self.coeff)] if self.coeff != 1 or not self.syms else []) + list(self.syms)
        return "*".join(parts)


def sym(name: str) -> Dim:
    return Dim(1, (name,))


@dataclass
class Const:
    value: np.ndarray
    name: str | None = None


@dataclass
class Input:
    name: str
    shape: tuple[int | None, ...]


@dataclass
class Seq:
    axes: tuple[tuple[str, Dim], ...]
    id: int

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(a[0] for a in self.axes)

    @property
    def width(self) -> int:
        """Size of the trailing feature axis."""
        return self.axes[-1][1].coeff

    def __str__(self) -> str:
        return "(" + ", ".join(f"{lab}={d}" for lab, d in self.axes) + ")"


@dataclass
class ShapeVec:
    dims: tuple[Dim, ...]
    scalar: bool = False


@dataclass
class StateIn:
    input: str
    start: int = 0
    stop: int | None = None


@dataclass
class StateOut:
    kind: str  # "h" or "c"
    slots: tuple[int, ...] = field(default_factory=tuple)


@dataclass
class Zeros:
    """A zero tensor of a (possibly symbolic) shape: ``ConstantOfShape`` of a shape vector, as
    exporters build a default initial state (``dims`` of axis 0 tracks ``Slice`` s)."""

    dims: tuple[Dim, ...]


Value = Const | Input | Seq | ShapeVec | StateIn | StateOut | Zeros


def where(node) -> str:
    return f"node '{node.name or node.output[0]}' ({node.op_type})"


def ints(value: Value, node, what: str) -> list[int]:
    """A constant integer vector (or scalar) operand."""
    if not isinstance(value, Const):
        raise UnsupportedOnnxError(f"{where(node)}: {what} must be a constant")
    return [int(v) for v in np.asarray(value.value).reshape(-1)]


def reshape_dims(seq_axes, target: list[Dim | int], node) -> list[Dim]:
    """Resolve a ``Reshape`` target (``0`` copies, ``-1`` infers) against the input sizes."""
    out: list[Dim | None] = []
    for i, t in enumerate(target):
        if isinstance(t, Dim):
            out.append(t)
        elif t == 0:
            if i >= len(seq_axes):
                raise UnsupportedOnnxError(f"{where(node)}: 0 at position {i} has no input axis")
            out.append(seq_axes[i][1])
        elif t == -1:
            out.append(None)
        elif t > 0:
            out.append(Dim(t))
        else:
            raise UnsupportedOnnxError(f"{where(node)}: bad shape entry {t}")
    total = Dim(1)
    for _, d in seq_axes:
        total = total * d
    known = Dim(1)
    for d in out:
        if d is not None:
            known = known * d
    if out.count(None) > 1 or not known.divides(total):
        raise UnsupportedOnnxError(
            f"{where(node)}: cannot reshape {[str(d) for _, d in seq_axes]} to {target}"
        )
    if None in out:
        out[out.index(None)] = total / known
    elif known != total:
        raise UnsupportedOnnxError(
            f"{where(node)}: cannot reshape {[str(d) for _, d in seq_axes]} to "
            f"{[str(d) for d in out]}"
        )
    return out  # type: ignore[return-value]


_MERGES = {("D", "H"): "F", ("T", "B"): "T*B", ("B", "T"): "B*T"}
_SPLITS = {v: k for k, v in _MERGES.items() if v != "F"}


def reshape_seq(seq: Seq, dims: list[Dim], node, new_id: int) -> Seq:
    """Relabel a sequence after a reshape: unit axes come and go, ``D, H`` merge into ``F``,
    ``T, B`` flatten into ``T*B`` and split back; anything else is refused."""
    src = [a for a in seq.axes if not (a[1] == Dim(1) and a[0] in ("1", "D"))]
    out: list[tuple[str, Dim]] = []
    i = 0
    dims_left = list(dims)
    while dims_left:
        d = dims_left.pop(0)
        if d == Dim(1) and (i >= len(src) or src[i][1] != Dim(1)):
            out.append(("1", d))
            continue
        if i >= len(src):
            raise UnsupportedOnnxError(f"{where(node)}: reshape of {seq} is not a relabelling")
        group, prod = [src[i]], src[i][1]
        i += 1
        outs, oprod = [d], d
        while prod != oprod:
            if oprod.divides(prod) and dims_left:
                nxt = dims_left.pop(0)
                outs.append(nxt)
                oprod = oprod * nxt
            elif i < len(src):
                group.append(src[i])
                prod = prod * src[i][1]
                i += 1
            else:
                raise UnsupportedOnnxError(f"{where(node)}: reshape of {seq} to {dims} is unclear")
        labels = tuple(a[0] for a in group)
        if len(group) == 1 and len(outs) == 1:
            out.append(group[0])
        elif len(outs) == 1 and labels in _MERGES:
            out.append((_MERGES[labels], outs[0]))
        elif len(group) == 1 and labels[0] in _SPLITS and len(outs) == 2:
            names = _SPLITS[labels[0]]
            if [str(o) for o in outs] != list(names):
                raise UnsupportedOnnxError(
                    f"{where(node)}: {labels[0]} split into {[str(o) for o in outs]}, not {names}"
                )
            out.extend(zip(names, outs, strict=True))
        else:
            raise UnsupportedOnnxError(
                f"{where(node)}: reshape mixes axes {list(labels)} of {seq} into "
                f"{[str(o) for o in outs]}; only unit axes, directions x features and "
                "time x batch can be merged or split"
            )
    if i != len(src):
        raise UnsupportedOnnxError(f"{where(node)}: reshape of {seq} drops axes")
    return Seq(normalize(out), new_id)


def normalize(axes) -> tuple[tuple[str, Dim], ...]:
    """Without a directions axis, the per-direction features are the features."""
    axes = tuple(axes)
    if "D" in (a[0] for a in axes):
        return axes
    return tuple(("F", d) if lab == "H" else (lab, d) for lab, d in axes)
