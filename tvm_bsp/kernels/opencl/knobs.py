"""OpenCL knobs of the GRU/LSTM kernels (:mod:`tvm_bsp.kernels.opencl.sequence`) and their defaults.

=================  ===============================================================================
knob               meaning
=================  ===============================================================================
``work_group``     dense recurrent step: threads of the work-group of one hidden unit; they split
                   the unit's columns and sum their partial products in local memory (a tree)
``vector``         dense recurrent step: consecutive columns per thread and iteration
``panel_rows``     BSPC / mat-mat kernels: lanes (rows) of a panel = threads of its work-group
``chunk``          BSPC / mat-mat kernels: columns of ``x`` (or ``h``) staged in local memory
                   per round, loaded once for all lanes of the panel
``frames``         mat-mat kernels: frames per work-group (the staged columns serve all of them)
``exact``          OpenCL's ``exp`` for sigmoid/tanh (True) or the polynomial forms of
                   :mod:`tvm_bsp.kernels.fast_math`
=================  ===============================================================================

Defaults per device: Mali (Bifrost/Valhall) has small work-groups that like per-thread
contiguous loads (``vector=4``, 64 threads, 16-row panels); Adreno has wide waves (128
threads per dense unit, 32-row panels, scalar coalesced loads).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import tvm

from tvm_bsp.kernels.knobs import Knob

#: The knobs with their choices (the tuner's search space) and the generic defaults.
GPU_RNN_KNOBS: tuple[Knob, ...] = (
    Knob("work_group", (32, 64, 128, 256), 64, "threads per hidden unit (dense step)"),
    Knob("vector", (1, 2, 4, 8), 4, "consecutive columns per thread (dense step)"),
    Knob("panel_rows", (8, 16, 32, 64), 16, "lanes per panel (BSPC step, mat-mat)"),
    Knob("chunk", (16, 32, 64, 128), 32, "columns staged in local memory per round"),
    Knob("frames", (1, 2, 4, 8), 4, "frames per work-group (mat-mat)"),
    Knob("exact", (True, False), True, "OpenCL exp for sigmoid/tanh"),
)

_BY_NAME = {k.name: k for k in GPU_RNN_KNOBS}

_DEVICE_DEFAULTS: dict[str, dict[str, Any]] = {
    "mali": {"work_group": 64, "vector": 4, "panel_rows": 16, "chunk": 32, "frames": 4},
    "adreno": {"work_group": 128, "vector": 1, "panel_rows": 32, "chunk": 64, "frames": 4},
}


@dataclass(frozen=True)
class GPURNNKnobs:
    """One configuration of the OpenCL RNN kernels (see the module docstring)."""

    work_group: int = 64
    vector: int = 4
    panel_rows: int = 16
    chunk: int = 32
    frames: int = 4
    exact: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            knob = _BY_NAME[f.name]
            if type(value) is not type(knob.default) or value not in knob.choices:
                raise ValueError(f"knob {f.name}={value!r} is not one of {knob.choices}")

    def updated(self, overrides: Mapping[str, Any] | None) -> GPURNNKnobs:
        """A copy with ``overrides`` applied (unknown knob names are an error)."""
        if not overrides:
            return self
        unknown = sorted(set(overrides) - set(_BY_NAME))
        if unknown:
            raise ValueError(f"unknown OpenCL RNN knobs {unknown}; knobs are {sorted(_BY_NAME)}")
        return replace(self, **dict(overrides))

    def to_json(self) -> str:
        """JSON text of the knobs."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GPURNNKnobs:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))


def is_opencl(target: tvm.target.Target) -> bool:
    """True for an ``opencl`` target."""
    return target.kind.name == "opencl"


def default_gpu_rnn_knobs(target: tvm.target.Target) -> GPURNNKnobs:
    """Defaults for an OpenCL target: per ``device`` (``mali``, ``adreno``), generic otherwise.

    Raises
    ------
    ValueError
        If ``target`` is not an OpenCL target.
    """
    if not is_opencl(target):
        raise ValueError(f"not an OpenCL target: {target}")
    device = str(target.attrs.get("device", ""))
    return GPURNNKnobs(**_DEVICE_DEFAULTS.get(device, {}))


#: Module attribute holding the OpenCL knobs: JSON ``{"*": defaults, <weight var>: overrides}``.
GPU_KNOBS_ATTR = "tvm_bsp.gpu_knobs"


def gpu_knobs_of(mod: tvm.IRModule, weight_var: str) -> GPURNNKnobs:
    """The OpenCL knobs attached for the layer whose weight variable is ``weight_var``.

    Without attached knobs the generic defaults of :class:`GPURNNKnobs` apply.
    """
    from tvm_bsp.kernels.rules import OPENCL_KERNELS  # the rules import this module

    return OPENCL_KERNELS.attached_knobs(mod, weight_var)
