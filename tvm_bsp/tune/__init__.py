"""Tune BSPC kernel knobs on the host or on a remote device over TVM RPC.

- :func:`tune_spmm`: knob search (untuned choice first, then defaults and random configs)
  with MetaSchedule's ``LocalBuilder`` / ``RPCRunner``; see :mod:`.tuner` for why the knobs
  are not MetaSchedule trace decisions.
- :func:`tune_model`: the knobs of every recurrent layer of a model (per-frame streaming time
  of the layer's compiled ``step``), with the same runner and database; ``compile_model(...,
  tuned=DB)`` applies the best record per layer (:mod:`tvm_bsp.records.layers`).
- :mod:`.block_search`: block-grid x rate search for accuracy (PER) and latency, Pareto front.
- :class:`TuningDatabase` (:mod:`tvm_bsp.records`, below the compiler and this package): a
  directory of per-workload JSON records, appended atomically after every measurement;
  :func:`best_config` / :func:`apply_best` re-apply the best config in any process.
- :mod:`tvm_bsp.devices.tracker`: one bounded question to an RPC tracker (does it answer, is
  the key registered); :class:`TrackerError` when tuning could never connect.
- ``tvm-bsp tune`` and ``tvm-bsp rpc-server``: :mod:`tvm_bsp.cli.tune`.
"""

from tvm_bsp.devices.tracker import TrackerError
from tvm_bsp.records.database import (
    TuningDatabase,
    apply_best,
    best_config,
    structure_fingerprint,
    workload_key,
)
from tvm_bsp.records.layers import layer_workload, tuned_records
from tvm_bsp.tune.layers import rnn_candidates
from tvm_bsp.tune.model_tuner import load_model_source, tune_model
from tvm_bsp.tune.runner import TuneResult, TuningError
from tvm_bsp.tune.tuner import candidate_configs, tune_spmm

__all__ = [
    "TrackerError",
    "TuneResult",
    "TuningDatabase",
    "TuningError",
    "apply_best",
    "best_config",
    "candidate_configs",
    "layer_workload",
    "load_model_source",
    "rnn_candidates",
    "structure_fingerprint",
    "tune_model",
    "tune_spmm",
    "tuned_records",
    "workload_key",
]
