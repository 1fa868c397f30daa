"""Targets by name, and which template family serves a target.

Names: ``host`` (this machine's CPU: LLVM with the detected ``mcpu``), ``arm64`` (aarch64
Linux with NEON), ``opencl-mali`` and ``opencl-adreno`` (OpenCL GPUs with an aarch64 host).
"""

from __future__ import annotations

from typing import Any

import tvm

TARGET_NAMES = ("host", "arm64", "opencl-mali", "opencl-adreno")

_ARM64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}


def host_target() -> tvm.target.Target:
    """LLVM target for this machine's CPU (``mcpu`` from LLVM's host detection)."""
    from tvm.target import codegen

    return tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()})


def resolve_target(target: str | dict | tvm.target.Target, host: Any = None) -> tvm.target.Target:
    """Turn a target name (see the module docstring), dict or Target into a Target.

    Parameters
    ----------
    target : str, dict or tvm.target.Target
        A name from :data:`TARGET_NAMES`, or anything :class:`tvm.target.Target` accepts.
    host : str, dict or tvm.target.Target, optional
        Host of an OpenCL target; default aarch64 for the named OpenCL targets. Pass
        ``"host"`` to run OpenCL kernels from this machine (e.g. POCL).

    Returns
    -------
    tvm.target.Target
    """
    if isinstance(target, str) and target in TARGET_NAMES:
        if target == "host":
            return host_target()
        if target == "arm64":
            return tvm.target.Target(dict(_ARM64))
        device = target.split("-", 1)[1]
        host_t = _resolve_host(host) if host is not None else tvm.target.Target(dict(_ARM64))
        return tvm.target.Target({"kind": "opencl", "device": device}, host=host_t)
    if isinstance(target, str) and target.startswith(("opencl-", "arm")):
        raise ValueError(f"unknown target name {target!r}; names are {TARGET_NAMES}")
    t = tvm.target.Target(target)
    if host is not None and t.kind.name != "llvm":
        t = tvm.target.Target(t, host=_resolve_host(host))
    return t


def _resolve_host(host: Any) -> tvm.target.Target:
    if isinstance(host, str) and host in ("host", "arm64"):
        return resolve_target(host)
    return tvm.target.Target(host)


def family(target: tvm.target.Target) -> str:
    """Kernel family of a target: ``"cpu"`` for ``llvm``, ``"gpu"`` for OpenCL.

    The answer of the first rule of :data:`tvm_bsp.kernels.rules.RULES` that serves it.

    Raises
    ------
    ValueError
        For a target no rule serves.
    """
    from tvm_bsp.kernels.rules import kernels_for

    try:
        return kernels_for(target).family
    except NotImplementedError as err:
        kind = target.kind.name
        raise ValueError(f"no schedule template for target kind {kind!r}: {err}") from None


def is_arm(target: tvm.target.Target) -> bool:
    """True for an aarch64 / ARM LLVM target."""
    triple = str(target.attrs.get("mtriple", ""))
    return triple.startswith(("aarch64", "arm"))
