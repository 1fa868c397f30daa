"""Knobs of the RNN kernel templates and their defaults per target.

=====================  =====================================================================
knob                   meaning
=====================  =====================================================================
``lanes``              ``P``: rows (units) per vector tile / panel
``frames``             ``F``: frames per register tile of the mat-mat kernels
``k_split``            independent accumulators over a BSPC panel's columns
``threads``            thread groups of the BSPC row-stripe partition (and the parallel width)
``min_parallel_macs``  a product with fewer multiply-adds per step runs on one thread: a
                       time loop shared by threads meets at a barrier every step, which
                       costs more than it saves for small products and stalls whenever
                       another process holds a core (default 150k: the reference GRU's
                       dense, 10x and 19x matrices run in parallel, sparser ones serially)
``exact``              TVM's ``sigmoid``/``tanh`` intrinsics instead of the vectorizable
                       polynomial forms
``panel_order``        how BSPC row stripes are cut into panels (:data:`PANEL_ORDERS`):
                       ``"grouped"`` packs rows kept by the same blocks together
                       (:mod:`tvm_bsp.kernels.panel_groups`, fewest zero lanes), ``"plain"``
                       cuts the matrix's reorder (recurrent products) or ascending rows
                       (mat-mat) into consecutive panels
=====================  =====================================================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import tvm

from tvm_bsp.bspc.matrix import BSPCMatrix

#: Values of the ``panel_order`` knob.
PANEL_ORDERS = ("grouped", "plain")

#: Gates stacked in the weights of each cell type (same table as the frontend's).
CELL_GATES: dict[str, int] = {"gru": 3, "kaldi_gru": 3, "lstm": 4}


@dataclass(frozen=True)
class RNNKnobs:
    """One kernel configuration (see the module docstring)."""

    lanes: int = 8
    frames: int = 4
    k_split: int = 2
    threads: int = 1
    min_parallel_macs: int = 150_000
    exact: bool = False
    panel_order: str = "grouped"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "exact":
                if not isinstance(value, bool):
                    raise ValueError(f"knob exact must be a bool, got {value!r}")
            elif f.name == "panel_order":
                if value not in PANEL_ORDERS:
                    raise ValueError(
                        f"knob panel_order must be one of {PANEL_ORDERS}, got {value!r}"
                    )
            elif (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (0 if f.name == "min_parallel_macs" else 1)
            ):
                raise ValueError(f"knob {f.name} must be a positive integer, got {value!r}")

    def updated(self, overrides: Mapping[str, Any] | None) -> RNNKnobs:
        """A copy with ``overrides`` applied (unknown knob names are an error)."""
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown RNN knobs {unknown}; knobs are {sorted(known)}")
        return replace(self, **dict(overrides))

    def row_order(self, matmat: bool) -> str:
        """The layout's ``row_order`` for a BSPC weight of a mat-mat (or a recurrent) kernel."""
        if self.panel_order == "grouped":
            return "grouped"
        return "natural" if matmat else "reorder"

    def parallel(self, macs_per_step: int) -> bool:
        """Whether a product of ``macs_per_step`` multiply-adds runs in parallel."""
        return self.threads > 1 and macs_per_step >= self.min_parallel_macs

    def to_json(self) -> str:
        """JSON text of the knobs."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RNNKnobs:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))


def is_aarch64(target: tvm.target.Target) -> bool:
    """True for an ``llvm`` target generating aarch64 code."""
    triple = str(target.attrs.get("mtriple", "")) if target.kind.name == "llvm" else ""
    return triple.startswith(("aarch64", "arm64"))


def default_knobs(target: tvm.target.Target) -> RNNKnobs:
    """Defaults for a CPU (``llvm``) target.

    x86 with 512-bit vectors: 16 lanes, 8-frame tiles; 256-bit: 8 lanes; aarch64 (NEON,
    128-bit): 8 lanes (two registers per tile row), 4 frames and 4 threads (a phone's big
    cores); host targets use this machine's core count.
    """
    if target.kind.name != "llvm":
        raise NotImplementedError(f"no RNN kernel templates for target kind {target.kind.name!r}")
    if is_aarch64(target):
        return RNNKnobs(lanes=8, frames=4, threads=4)
    from tvm.target import codegen

    width = int(codegen.llvm_get_vector_width(target))
    lanes = 16 if width >= 512 else 8
    return RNNKnobs(lanes=lanes, frames=8, threads=min(8, os.cpu_count() or 1))


#: Values the layer tuner (:func:`tvm_bsp.tune.tune_model`) tries per knob. ``frames`` only
#: shapes the mat-mat tiles of whole utterances and ``exact`` changes the arithmetic, so the
#: streaming tuner keeps their defaults; ``threads`` is capped by the target's default.
TUNABLE_CHOICES: dict[str, tuple[int, ...]] = {
    "lanes": (4, 8, 16),
    "k_split": (1, 2, 4),
    "threads": (1, 2, 4, 8),
    "min_parallel_macs": (0, 50_000, 150_000, 1_000_000),
}


def knob_space(target: tvm.target.Target) -> dict[str, tuple[int, ...]]:
    """The tuner's choices per knob for ``target``, each including the target's default.

    Parameters
    ----------
    target : tvm.target.Target
        An ``llvm`` target.

    Returns
    -------
    dict
        ``{knob name: sorted tuple of values}``.
    """
    base = default_knobs(target)
    space: dict[str, tuple[int, ...]] = {}
    for name, choices in TUNABLE_CHOICES.items():
        default = getattr(base, name)
        values = {c for c in choices if name != "threads" or c <= base.threads} | {default}
        space[name] = tuple(sorted(values))
    return space


#: Per stored panel column, the instruction cost (index load, broadcast of ``x``, loop)
#: expressed in float32 lanes of weight traffic: a panel column of ``P`` lanes costs about
#: ``P + LANE_OVERHEAD``. Fitted on the 2 x 1024 GRU streaming on one x86 AVX-512 thread:
#: 4-row stripes (grid 768 x 16, 10x) ran 348 / 151 / 112 us per frame at 16 / 8 / 4 lanes;
#: 32-row stripes (96 x 16) ran 68 / 81 us at 16 / 8 lanes at 10x and 32.1 / 34.3 us at
#: 103x, where 8 lanes store 1.5x the panel columns of 16 (break-even overhead: 7.3).
LANE_OVERHEAD = 10
#: Per panel, the fixed cost (accumulator setup, reduction, bias, activation, store) in the
#: same units. Fitted on the one-frame BSPC mat-mat kernel of the reference GRU's 3072 x 1024
#: recurrent matrix (``"grouped"`` panels, one AVX-512 thread) at 43 / 103 / 301x: time per
#: panel 9 / 6 / 5 ns at 16 / 8 / 4 lanes against 0.023 ns per lane of a column, i.e. 390 /
#: 256 / 213 lanes; at 301x 16 lanes ran 3.0 us and 8 lanes 3.4 us with 0.78x the columns.
PANEL_OVERHEAD = 250
#: Panel heights :func:`suggest_lanes` chooses from (those up to the target's default).
LANE_CHOICES = (4, 8, 16)


def suggest_lanes(
    matrices: Sequence[BSPCMatrix],
    target: tvm.target.Target,
    panel_order: str = RNNKnobs.panel_order,
    panel_overhead: int = PANEL_OVERHEAD,
) -> int:
    """The panel height (``lanes``) that fits the row stripes of a layer's BSPC weights.

    A panel never spans two row stripes, so stripes shorter than the default ``lanes`` are
    padded with dummy lanes that are loaded and multiplied like real ones: 4-row stripes
    run about 3x slower at 16 lanes than at 4; but every panel has a fixed cost too, so
    narrow panels of long stripes lose what they save in zeros. The choice minimises
    ``sum(panel columns(P) * (P + LANE_OVERHEAD) + panels(P) * PANEL_OVERHEAD)`` over
    :data:`LANE_CHOICES` up to the target's default (ties: the wider panel), counted in the
    layout ``panel_order`` packs.

    Parameters
    ----------
    matrices : sequence of BSPCMatrix
        The layer's BSPC weights (empty: the default).
    target : tvm.target.Target
        An ``llvm`` target.
    panel_order : str
        The ``panel_order`` knob (:data:`PANEL_ORDERS`) the layer is built with.
    panel_overhead : int
        The per-panel cost (default :data:`PANEL_OVERHEAD`; 0 is the column-only model of
        earlier releases).

    Returns
    -------
    int
    """
    from tvm_bsp.kernels.layout import panel_counts

    order = RNNKnobs(panel_order=panel_order).row_order(matmat=False)
    widest = default_knobs(target).lanes
    if not matrices:
        return widest
    choices = sorted({p for p in LANE_CHOICES if p <= widest} | {widest}, reverse=True)
    costs = {}
    for p in choices:
        counts = [panel_counts(m, p, order) for m in matrices]
        costs[p] = sum(c * (p + LANE_OVERHEAD) + n * panel_overhead for c, n in counts)
    return min(choices, key=lambda p: (costs[p], -p))
