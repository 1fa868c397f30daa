"""Targets and knob tables, below the kernels of :mod:`tvm_bsp.ops` (which import them).

- :mod:`.targets`: targets by name (``host``, ``arm64``, ``opencl-mali``, ``opencl-adreno``)
  and the kernel family (``cpu`` / ``gpu``) of a target;
- :mod:`.knobs`: :class:`Knob` (named choices with a default) and configs over knobs;
- :mod:`.gpu_rnn`: the OpenCL knobs of the RNN and mat-mat kernels and their defaults per
  device.

The CPU knob table lives beside its kernels (:mod:`tvm_bsp.ops.rnn_knobs`: its lane
suggestion reads the packed layout); the templates that turn a config into a kernel are
:mod:`tvm_bsp.ops.matmat`. Nothing here imports :mod:`tvm_bsp.ops`.
"""

from tvm_bsp.schedules.knobs import Knob, all_configs, resolve_config
from tvm_bsp.schedules.targets import TARGET_NAMES, family, host_target, resolve_target

__all__ = [
    "TARGET_NAMES",
    "Knob",
    "all_configs",
    "family",
    "host_target",
    "resolve_config",
    "resolve_target",
]
