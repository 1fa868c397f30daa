"""The RNN pass pipeline: sparsify, attach schedules, lower."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tvm

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.passes.attach_schedules import AttachSchedules
from tvm_bsp.passes.lower_rnn import LowerRNN
from tvm_bsp.passes.sparsify import SparsifyWeights


def rnn_pipeline(
    target: tvm.target.Target,
    bspc: Mapping[str, BSPCMatrix] | None = None,
    tuned: Mapping[str, Mapping[str, Any]] | None = None,
    knobs: Mapping[str, Any] | None = None,
) -> tvm.transform.Sequential:
    """``SparsifyWeights -> AttachSchedules -> LowerRNN`` as one ``Sequential``.

    Parameters
    ----------
    target : tvm.target.Target
    bspc : mapping, optional
        ``{parameter name: BSPCMatrix}``; other weights stay dense.
    tuned : mapping, optional
        Per-layer knob overrides (see :func:`AttachSchedules`).
    knobs : mapping, optional
        Knob overrides for every layer.

    Returns
    -------
    tvm.transform.Sequential
        Apply it to the module of :func:`tvm_bsp.frontend.to_relax`; the result only needs
        ``tvm.compile``.
    """
    return tvm.transform.Sequential(
        [SparsifyWeights(bspc or {}), AttachSchedules(target, tuned, knobs), LowerRNN()],
        name="tvm_bsp.rnn_pipeline",
    )
