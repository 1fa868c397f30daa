"""Tuned records of RNN layers: workloads and the lookup ``compile_model`` applies.

A recurrent layer compiles into two kernels (the input projection and the sequence kernel
with the time loop) that share one :class:`~tvm_bsp.kernels.rnn_knobs.RNNKnobs` config, keyed by
the layer's ``weight_hh`` parameter name (:func:`tvm_bsp.passes.AttachSchedules`). Its
*workload* is what the config's speed depends on::

    {"kernel": "rnn_layer", "mode": "stream", "batch": 1, "cell": "gru",
     "input_size": 39, "hidden_size": 256, "bias_hh": true,
     "weight_ih": "<structure fingerprint>" | "dense", "weight_hh": ...,
     "target": "<target JSON>"}

(the fingerprint is :func:`~tvm_bsp.records.structure_fingerprint` of the BSPC form: index
arrays, not values, so a re-trained model with the same masks reuses its records). Records
live in the same :class:`~tvm_bsp.records.TuningDatabase` files as the BSPC kernel's, with the
same record fields; ``config`` is a full ``RNNKnobs`` dictionary. The tuner that writes them
is :func:`tvm_bsp.tune.tune_model`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.records.database import TuningDatabase, key_of, structure_fingerprint

__all__ = [
    "layer_key",
    "layer_sparse",
    "layer_workload",
    "resolve_tuned",
    "suggested_knobs",
    "tuned_records",
    "with_suggestions",
]


def _target_str(target: Any) -> str:
    from tvm_bsp.kernels.targets import resolve_target

    return str(resolve_target(target))


def layer_workload(
    layer: Any, sparse: Mapping[str, BSPCMatrix], target: Any, batch: int = 1
) -> dict[str, Any]:
    """The workload of one recurrent layer compiled for streaming.

    Parameters
    ----------
    layer : tvm_bsp.frontend.model.RNNLayer
    sparse : mapping
        ``{parameter name: BSPCMatrix}`` of the model's BSPC weights (others are dense).
    target : str, dict or tvm.target.Target
    batch : int
        Sequences per step.

    Returns
    -------
    dict
        JSON-able description; :func:`layer_key` hashes it.
    """

    def structure(role: str) -> str:
        m = sparse.get(layer.names.get(role, ""))
        return "dense" if m is None else structure_fingerprint(m)

    return {
        "kernel": "rnn_layer",
        "mode": "stream",
        "batch": int(batch),
        "cell": layer.cell,
        "input_size": int(layer.input_size),
        "hidden_size": int(layer.hidden_size),
        "bias_hh": layer.bias_hh is not None,
        "weight_ih": structure("weight_ih"),
        "weight_hh": structure("weight_hh"),
        "target": _target_str(target),
        # projected LSTMs run another kernel (keys of the other layers stay as they were)
        **({"proj_size": int(layer.proj_size)} if layer.proj_size else {}),
    }


def layer_key(layer: Any, sparse: Mapping[str, BSPCMatrix], target: Any, batch: int = 1) -> str:
    """Database key of :func:`layer_workload` (32 hex digits)."""
    return key_of(layer_workload(layer, sparse, target, batch))


def layer_sparse(layer: Any, sparse: Mapping[str, BSPCMatrix]) -> dict[str, BSPCMatrix]:
    """The BSPC weights of one layer (a sub-mapping of ``sparse``)."""
    names = {layer.names.get(r) for r in ("weight_ih", "weight_hh")}
    return {n: m for n, m in sparse.items() if n in names}


def tuned_records(
    model: Any,
    sparse: Mapping[str, BSPCMatrix],
    target: Any,
    db: TuningDatabase | str | os.PathLike[str],
) -> dict[str, dict[str, Any]]:
    """The best record's config of every layer whose workload is in ``db``.

    Parameters
    ----------
    model : tvm_bsp.frontend.model.RNNModel
    sparse : mapping
        ``{parameter name: BSPCMatrix}`` as the compiler resolved them.
    target : str, dict or tvm.target.Target
    db : TuningDatabase or path-like

    Returns
    -------
    dict
        ``{weight_hh parameter name: RNNKnobs dict}`` (the ``tuned`` mapping of
        :func:`tvm_bsp.passes.AttachSchedules`); layers without a usable record are absent.

    Raises
    ------
    FileNotFoundError
        If ``db`` is a path that does not exist.
    """
    from tvm_bsp.kernels.rnn_knobs import RNNKnobs

    if not isinstance(db, TuningDatabase):
        if not os.path.isdir(db):
            raise FileNotFoundError(f"tuning database directory {db} not found")
        db = TuningDatabase(db)
    out: dict[str, dict[str, Any]] = {}
    for _, k, layer in model.directions():  # both halves of a bidirectional layer
        best = db.best(layer_key(layer, sparse, target))
        if best is None:
            continue
        try:
            knobs = RNNKnobs().updated(best["config"])
        except (TypeError, ValueError):
            continue  # a record of an older knob set: defaults apply
        out[layer.name("weight_hh", k)] = json.loads(knobs.to_json())
    return out


def suggested_knobs(
    model: Any, sparse: Mapping[str, BSPCMatrix], target: Any
) -> dict[str, dict[str, Any]]:
    """Untuned per-layer knob defaults that depend on the layer's BSPC structure.

    Today the panel height: :func:`~tvm_bsp.kernels.rnn_knobs.suggest_lanes` of the layer's
    BSPC weights (short row stripes want short panels).

    Parameters
    ----------
    model : tvm_bsp.frontend.model.RNNModel
    sparse : mapping
        ``{parameter name: BSPCMatrix}`` as the compiler resolved them.
    target : str, dict or tvm.target.Target
        An ``llvm`` target (anything else: no suggestions).

    Returns
    -------
    dict
        ``{weight_hh parameter name: {"lanes": P}}`` for the layers whose suggestion differs
        from the target's default.
    """
    from tvm_bsp.kernels.rnn_knobs import default_knobs, suggest_lanes
    from tvm_bsp.kernels.targets import resolve_target

    tgt = resolve_target(target)
    if tgt.kind.name != "llvm":
        return {}
    default = default_knobs(tgt).lanes
    out: dict[str, dict[str, Any]] = {}
    for _, k, layer in model.directions():
        matrices = list(layer_sparse(layer, sparse).values())
        lanes = suggest_lanes(matrices, tgt) if matrices else default
        if lanes != default:
            out[layer.name("weight_hh", k)] = {"lanes": lanes}
    return out


def with_suggestions(
    tuned: Mapping[str, Mapping[str, Any]],
    suggested: Mapping[str, Mapping[str, Any]],
    knobs: Mapping[str, Any] | None,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Merge :func:`suggested_knobs` under tuned records and explicit knobs.

    A suggested knob is dropped where ``knobs`` (``compile_model(knobs=...)``), the layer's
    tuned record or a ``"*"`` record sets it. Returns ``(per-layer mapping for
    AttachSchedules, the suggestions applied)``.
    """
    merged = {k: dict(v) for k, v in tuned.items()}
    applied: dict[str, dict[str, Any]] = {}
    fixed = set(knobs or {}) | set(tuned.get("*", {}))
    for name, conf in suggested.items():
        keep = {k: v for k, v in conf.items() if k not in fixed and k not in tuned.get(name, {})}
        if keep:
            merged[name] = {**keep, **merged.get(name, {})}
            applied[name] = keep
    return merged, applied


def resolve_tuned(
    model: Any,
    sparse: Mapping[str, BSPCMatrix],
    target: Any,
    tuned: Any,
) -> dict[str, dict[str, Any]]:
    """The ``tuned`` argument of ``compile_model`` as a per-layer knob mapping.

    Parameters
    ----------
    model : tvm_bsp.frontend.model.RNNModel
    sparse : mapping
    target : str, dict or tvm.target.Target
    tuned : None, mapping, TuningDatabase or path-like
        A mapping is used as it is (``{weight_hh name or "*": {knob: value}}``); a database
        (or its directory) gives the best record of every layer whose workload it holds.

    Returns
    -------
    dict
    """
    if tuned is None:
        return {}
    if isinstance(tuned, Mapping):
        return {str(k): dict(v) for k, v in tuned.items()}
    if isinstance(tuned, TuningDatabase | str | os.PathLike):
        return tuned_records(model, sparse, target, tuned)
    raise ValueError(
        f"tuned must be a mapping, a TuningDatabase or a directory, got {type(tuned).__name__}"
    )
