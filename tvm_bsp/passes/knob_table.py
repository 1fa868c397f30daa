"""The one rule by which a layer's kernel knobs are chosen, on every target.

Target defaults, then tuned records (``"*"`` first, then the layer's own), then the explicit
knobs of the caller, which always win: ``knobs={"threads": 1}`` holds for a tuned layer on
the CPU and on OpenCL alike. :func:`knob_table` is shared by
:func:`~tvm_bsp.passes.AttachSchedules` and :func:`~tvm_bsp.passes.AttachOpenCLSchedules`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from tvm_bsp.passes.ir_utils import var_name


class Knobs(Protocol):
    """What :func:`knob_table` needs of a knob class (``RNNKnobs``, ``GPURNNKnobs``)."""

    def updated(self, changes: Mapping[str, Any] | None) -> Knobs: ...

    def to_json(self) -> str: ...


K = TypeVar("K", bound=Knobs)


def knob_table(
    base: K,
    tuned: Mapping[str, Mapping[str, Any]] | None = None,
    explicit: Mapping[str, Any] | None = None,
) -> str:
    """JSON ``{"*": knobs of every layer, <weight var>: knobs of that layer}``.

    Parameters
    ----------
    base : knobs
        The target's defaults.
    tuned : mapping, optional
        Tuned records ``{weight name or "*": {knob: value}}``; weight names become Relax
        variable names (:func:`~tvm_bsp.passes.ir_utils.var_name`).
    explicit : mapping, optional
        The caller's knobs for every layer; they win over tuned records.

    Returns
    -------
    str
        The table, sorted JSON (a module attribute).

    Raises
    ------
    ValueError
        For an unknown knob or a bad value (raised by the knob class).
    """
    common = base.updated(explicit)
    table = {"*": json.loads(common.to_json())}
    for name, overrides in sorted((tuned or {}).items(), key=lambda kv: kv[0] != "*"):
        key = "*" if name == "*" else var_name(name)
        start = common.updated(table.get(key, {}))
        merged = start.updated(overrides).updated(explicit)
        table[key] = json.loads(merged.to_json())
        if key == "*":
            common = merged
    return json.dumps(table, sort_keys=True)
