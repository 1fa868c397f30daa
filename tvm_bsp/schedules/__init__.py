"""Schedule templates per target family, with named knobs a tuner can sample.

- :mod:`.cpu`: ``llvm`` targets (x86, aarch64): vectorized row panels, balanced threads.
- :mod:`.gpu`: OpenCL (Mali, Adreno): panels to work-groups, ``x[cols]`` staged in local
  memory.

:func:`spmm_template` / :func:`dense_template` pick the family for a target; every template
has ``knobs(batch)`` (a list of :class:`Knob` with defaults) and builds a PrimFunc from a full
config (:func:`resolve_config`).
"""

from tvm_bsp.schedules.knobs import Knob, all_configs, resolve_config
from tvm_bsp.schedules.targets import TARGET_NAMES, family, host_target, resolve_target
from tvm_bsp.schedules.templates import (
    DenseTemplate,
    SpmmTemplate,
    dense_template,
    spmm_template,
)

__all__ = [
    "TARGET_NAMES",
    "DenseTemplate",
    "Knob",
    "SpmmTemplate",
    "all_configs",
    "dense_template",
    "family",
    "host_target",
    "resolve_config",
    "resolve_target",
    "spmm_template",
]
