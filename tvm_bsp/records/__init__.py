"""Tuning records: the database the tuner writes and the lookup the compiler applies.

Below both :mod:`tvm_bsp.compiler` and :mod:`tvm_bsp.tune` (the tuner compiles candidate
models, the compiler reads the records): neither is imported from here.

- :mod:`.database`: :class:`TuningDatabase`, a directory of per-workload JSON records,
  appended atomically; workload keys (:func:`workload_key`, :func:`structure_fingerprint`)
  and :func:`best_config` / :func:`apply_best` for the BSPC kernel.
- :mod:`.layers`: workloads of recurrent layers (:func:`layer_workload`), the best record per
  layer (:func:`tuned_records`), structure-dependent untuned defaults
  (:func:`suggested_knobs`) and ``compile_model(tuned=...)`` (:func:`resolve_tuned`).
"""

from tvm_bsp.records.database import (
    TuningDatabase,
    apply_best,
    best_config,
    config_key,
    structure_fingerprint,
    workload_key,
)
from tvm_bsp.records.layers import (
    layer_key,
    layer_workload,
    resolve_tuned,
    suggested_knobs,
    tuned_records,
    with_suggestions,
)

__all__ = [
    "TuningDatabase",
    "apply_best",
    "best_config",
    "config_key",
    "layer_key",
    "layer_workload",
    "resolve_tuned",
    "structure_fingerprint",
    "suggested_knobs",
    "tuned_records",
    "with_suggestions",
    "workload_key",
]
