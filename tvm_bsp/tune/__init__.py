"""Tune BSPC kernel knobs on the host or on a remote device over TVM RPC.

- :func:`tune_spmm`: knob search (untuned choice first, then defaults and random configs)
  with MetaSchedule's ``LocalBuilder`` / ``RPCRunner``; see :mod:`.tuner` for why the knobs
  are not MetaSchedule trace decisions.
- :class:`TuningDatabase`: a directory of per-workload JSON records, appended atomically after
  every measurement; :func:`best_config` / :func:`apply_best` re-apply the best config in any
  process.
- :mod:`.cli`: ``tvm-bsp tune`` and ``tvm-bsp rpc-server``.
"""

from tvm_bsp.tune.database import (
    TuningDatabase,
    apply_best,
    best_config,
    structure_fingerprint,
    workload_key,
)
from tvm_bsp.tune.tuner import TuneResult, TuningError, candidate_configs, tune_spmm

__all__ = [
    "TuneResult",
    "TuningDatabase",
    "TuningError",
    "apply_best",
    "best_config",
    "candidate_configs",
    "structure_fingerprint",
    "tune_spmm",
    "workload_key",
]
