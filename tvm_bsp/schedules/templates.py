"""Template objects: one per (kernel, target family), the interface a tuner and the builders use.

A template knows its knobs for a batch size, how to pack the weight for a config (the packed
layout depends on knobs such as the panel height) and how to generate the PrimFunc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.ops.dense_pack import pack_dense
from tvm_bsp.ops.layout import PanelLayout, pack_panels
from tvm_bsp.schedules import cpu, gpu
from tvm_bsp.schedules.cpu_cost import suggest_spmm_config
from tvm_bsp.schedules.knobs import Knob, resolve_config
from tvm_bsp.schedules.targets import family, host_target, is_arm

#: Kernel arguments of the CPU BSPC kernel (the output ``y`` last).
CPU_SPMM_ARGS = ("x", "thread_ptr", "panel_ptr", "panel_rows", "cols", "vals", "bias", "y")
#: Kernel arguments of the OpenCL BSPC kernel.
GPU_SPMM_ARGS = ("x", "panel_ptr", "panel_rows", "cols", "vals", "bias", "y")
#: Kernel arguments of the dense kernels.
DENSE_ARGS = ("x", "w", "bias", "y")

_ARM_THREADS = 4  # big cores of a phone SoC (Kryo 485 / Cortex-A76 class)


def _threads_default(target: tvm.target.Target) -> int | None:
    return _ARM_THREADS if is_arm(target) else None


@dataclass(frozen=True)
class SpmmTemplate:
    """BSPC kernel template for one target.

    Attributes
    ----------
    target : tvm.target.Target
    family : str
        ``"cpu"`` or ``"gpu"``.
    """

    target: tvm.target.Target
    family: str

    @property
    def arg_names(self) -> tuple[str, ...]:
        """PrimFunc parameter names in order (``x`` first, ``y`` last)."""
        return CPU_SPMM_ARGS if self.family == "cpu" else GPU_SPMM_ARGS

    def knobs(self, batch: int) -> list[Knob]:
        """The knobs (with defaults) of this template for ``batch`` frames."""
        if self.family == "cpu":
            return cpu.spmm_knobs(batch, _threads_default(self.target))
        return gpu.spmm_knobs(batch)

    def config(
        self,
        batch: int,
        config: dict[str, Any] | None = None,
        matrix: BSPCMatrix | None = None,
    ) -> dict[str, Any]:
        """A full config: ``config`` completed with defaults (validated).

        With ``matrix`` (CPU templates), the knobs ``config`` leaves out take the values the
        cost model of :mod:`.cpu_cost` suggests for that matrix instead of the static defaults.
        """
        knobs = self.knobs(batch)
        if matrix is None or self.family != "cpu":
            return resolve_config(knobs, config)
        suggested = suggest_spmm_config(matrix, batch, self.target, knobs, config)
        return resolve_config(knobs, {**suggested, **(config or {})})

    def pack(
        self, matrix: BSPCMatrix, config: dict[str, Any], bias: np.ndarray | None = None
    ) -> PanelLayout:
        """Pack ``matrix`` (and ``bias``) into the panel layout this config expects."""
        if self.family == "cpu":
            return pack_panels(
                matrix,
                panel_rows=config["panel_rows"],
                k_split=config["k_split"] * config["unroll"],
                threads=config["threads"],
                row_order=config["row_order"],
                bias=bias,
            )
        return pack_panels(
            matrix,
            panel_rows=config["panel_rows"],
            k_split=1,
            threads=1,
            row_order=config["row_order"],
            bias=bias,
        )

    def kernel(
        self, layout: PanelLayout, batch: int, config: dict[str, Any], activation: str | None
    ) -> tvm.tirx.PrimFunc:
        """Generate the scheduled PrimFunc."""
        if self.family == "cpu":
            return cpu.spmm_kernel(layout, batch, config, activation)
        return gpu.spmm_kernel(layout, batch, config, activation)


@dataclass(frozen=True)
class DenseTemplate:
    """Dense baseline kernel template for one target."""

    target: tvm.target.Target
    family: str

    arg_names: tuple[str, ...] = DENSE_ARGS

    def knobs(self, batch: int) -> list[Knob]:
        """The knobs (with defaults) of this template for ``batch`` frames."""
        if self.family == "cpu":
            return cpu.dense_knobs(batch, _threads_default(self.target))
        return gpu.dense_knobs(batch)

    def config(self, batch: int, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """A full config: ``config`` completed with defaults (validated)."""
        return resolve_config(self.knobs(batch), config)

    def pack(
        self, weight: np.ndarray, config: dict[str, Any], bias: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Pack a dense weight (and bias) for this config."""
        return pack_dense(weight, config["panel_rows"], bias)

    def kernel(
        self, M: int, N: int, batch: int, config: dict[str, Any], activation: str | None
    ) -> tvm.tirx.PrimFunc:
        """Generate the scheduled PrimFunc."""
        if self.family == "cpu":
            return cpu.dense_kernel(M, N, batch, config, activation)
        return gpu.dense_kernel(M, N, batch, config, activation)


def spmm_template(target: tvm.target.Target | None = None) -> SpmmTemplate:
    """The BSPC template for a target (default: this host)."""
    target = target or host_target()
    return SpmmTemplate(target, family(target))


def dense_template(target: tvm.target.Target | None = None) -> DenseTemplate:
    """The dense template for a target (default: this host)."""
    target = target or host_target()
    return DenseTemplate(target, family(target))
