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

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "exact":
                if not isinstance(value, bool):
                    raise ValueError(f"knob exact must be a bool, got {value!r}")
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
#: Panel heights :func:`suggest_lanes` chooses from (those up to the target's default).
LANE_CHOICES = (4, 8, 16)


def suggest_lanes(matrices: Sequence[BSPCMatrix], target: tvm.target.Target) -> int:
    """The panel height (``lanes``) that fits the row stripes of a layer's BSPC weights.

    A panel never spans two row stripes, so stripes shorter than the default ``lanes`` are
    padded with dummy lanes that are loaded and multiplied like real ones: 4-row stripes
    run about 3x slower at 16 lanes than at 4. The choice minimises
    ``sum(panel columns(P) * (P + LANE_OVERHEAD))`` over :data:`LANE_CHOICES` up to the
    target's default (ties: the wider panel).

    Parameters
    ----------
    matrices : sequence of BSPCMatrix
        The layer's BSPC weights (empty: the default).
    target : tvm.target.Target
        An ``llvm`` target.

    Returns
    -------
    int
    """
    from tvm_bsp.kernels.layout import panel_column_count

    widest = default_knobs(target).lanes
    if not matrices:
        return widest
    choices = sorted({p for p in LANE_CHOICES if p <= widest} | {widest}, reverse=True)
    costs = {
        p: sum(panel_column_count(m, p) for m in matrices) * (p + LANE_OVERHEAD) for p in choices
    }
    return min(choices, key=lambda p: (costs[p], -p))
