"""Candidate knob configs and one-layer models for tuning recurrent layers.

The workloads, keys and the lookup that ``compile_model`` applies live in
:mod:`tvm_bsp.records.layers`; this module holds what only the tuner needs:
:func:`rnn_candidates` (the configs to measure) and :func:`layer_model` (the layer to time).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Mapping
from typing import Any

from tvm_bsp.records.database import config_key

__all__ = ["layer_model", "rnn_candidates"]


def layer_model(layer: Any) -> Any:
    """A one-layer :class:`~tvm_bsp.frontend.model.RNNModel` (no head) of one direction.

    Masks and folded row scales are dropped: the BSPC weights come in resolved form. A reverse
    direction runs the forward kernel on flipped time, so it is timed as a forward one (and
    the model can stream, which the step timing needs).
    """
    from tvm_bsp.frontend.model import RNNModel

    one = dataclasses.replace(layer, masks={}, row_scale={}, reverse=False, backward=None)
    return RNNModel(layers=[one])


def rnn_candidates(
    target: Any, trials: int, seed: int = 0, defaults: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Up to ``trials`` distinct full RNN knob configs: the untuned default first, then random.

    Parameters
    ----------
    target : str, dict or tvm.target.Target
        An ``llvm`` target.
    trials : int
    seed : int
    defaults : mapping, optional
        Overrides of the target defaults (``compile_model(knobs=...)``).

    Returns
    -------
    list of dict
        ``RNNKnobs`` dictionaries; the first is what ``compile_model`` uses without records.
    """
    from tvm_bsp.kernels.rnn_knobs import default_knobs, knob_space
    from tvm_bsp.kernels.targets import resolve_target

    tgt = resolve_target(target)
    base = default_knobs(tgt).updated(defaults)
    space = knob_space(tgt)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(knobs: Any) -> None:
        cfg = json.loads(knobs.to_json())
        k = config_key(cfg)
        if k not in seen and len(out) < trials:
            seen.add(k)
            out.append(cfg)

    add(base)
    size = 1
    for choices in space.values():
        size *= len(choices)
    rng = random.Random(seed)
    attempts = 0
    while len(out) < min(trials, size) and attempts < 50 * max(1, trials):
        attempts += 1
        add(base.updated({name: rng.choice(choices) for name, choices in space.items()}))
    return out
