"""Mixed precision for CPU training: bfloat16 autocast where the CPU computes bf16 natively.

With ``torch.autocast("cpu", dtype=torch.bfloat16)`` the recurrent and linear layers' matrix
products run in bfloat16 (the weights, optimizer state and loss stay float32). That pays only
where the CPU has bf16 dot products (x86 ``avx512_bf16`` or ``amx_bf16``, Arm ``bf16``);
elsewhere bf16 is emulated and slower than float32, so :func:`bf16_native` decides, and
``"auto"`` means "where native". ``scripts/bench_training.py`` measures both.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def bf16_native() -> bool:
    """True when this CPU has native bfloat16 dot products (see the module docstring)."""
    return any(flag in cpu_flags() for flag in _BF16_FLAGS)


def resolve_bf16(setting: bool | str) -> bool:
    """``True`` / ``False`` as given; ``"auto"``: :func:`bf16_native`."""
    if setting == "auto":
        return bf16_native()
    if isinstance(setting, bool):
        return setting
    raise ValueError(f"bf16 must be True, False or 'auto', got {setting!r}")


@contextlib.contextmanager
def autocast(enabled: bool) -> Iterator[None]:
    """bfloat16 CPU autocast when ``enabled``, else nothing."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
        yield
