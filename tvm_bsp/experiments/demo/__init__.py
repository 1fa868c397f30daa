"""``tvm-bsp demo``: the project's main job.

=====================  ===================================================================
module                 job
=====================  ===================================================================
:mod:`.run`            the driver (the parser: :mod:`tvm_bsp.cli.demo`)
:mod:`.settings`       default and ``--quick`` settings, cache keys
:mod:`.models`         corpus, dense GRU, BSP-pruned GRU (cached)
:mod:`.builds`         compile dense/BSPC, run over RPC, PER and per-frame latency
:mod:`.report`         the results table, JSON records, plot
:mod:`.sizes`          the BSPC size table of RTMobile's reference GRU (``--sizes-only``)
=====================  ===================================================================
"""

from __future__ import annotations

import importlib

_SIZES = ("format_size_table", "reference_gru_weights", "run_demo", "size_table")

__all__ = list(_SIZES)


def __getattr__(name: str) -> object:
    # the size-table names import numpy/torch: only on first use (keeps `tvm-bsp --help` fast)
    if name not in _SIZES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.sizes"), name)
    globals()[name] = value
    return value
