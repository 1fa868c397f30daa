"""Worker-side functions plugged into MetaSchedule's ``LocalBuilder`` and ``RPCRunner``.

They run in MetaSchedule's popen workers (pickled by reference, so they live at module level
and import little). Each candidate config of a BSPC kernel is its own PrimFunc with its own
packed arrays; the tuner writes the kernel's real arguments (random ``x``, the packed index
and value arrays, zero ``y``) beside the built library as ``<artifact>.args.npz``.
:func:`upload_module` remembers which artifact the worker just uploaded and
:func:`alloc_arguments` uploads that artifact's arrays to the device, so the kernel walks the
real sparsity structure (MetaSchedule's default random fill would make it read out of
bounds).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any

import numpy as np

#: Entry function of the BSPC kernels (``tvm_bsp.kernels.build.SPMM_ENTRY``).
ENTRY = "bspc_spmm"
ARGS_SUFFIX = ".args.npz"

_STATE: dict[str, str] = {}


def build(mod: Any, target: Any, _params: Any = None) -> Any:
    """``f_build``: :func:`tvm.compile` the candidate's IRModule (no tensor-intrinsic import)."""
    import tvm

    return tvm.compile(mod, target=target)


def _artifact_path() -> str:
    return os.path.join(tempfile.mkdtemp(prefix="tvm-bsp-tune-"), f"bspc_{uuid.uuid4().hex}.so")


def export_host(mod: Any) -> str:
    """``f_export`` for host targets: a shared library linked by the system compiler.

    File names are unique: a device's loader caches libraries by path.
    """
    path = _artifact_path()
    mod.export_library(path)
    return path


def export_arm64(mod: Any) -> str:
    """``f_export`` for aarch64 targets: a ``.so`` linked by the aarch64 cross compiler."""
    from tvm_bsp.deploy.cross import export_arm64 as _export

    return str(_export(mod, _artifact_path()))


def local_session(_rpc_config: Any) -> Any:
    """``f_create_session`` for tuning on this machine without a tracker."""
    from tvm import rpc

    return rpc.LocalSession()


def upload_module(session: Any, local_path: str, remote_path: str) -> Any:
    """``f_upload_module``: upload and load the library; remember it for the arguments."""
    _STATE["local_path"] = local_path
    session.upload(local_path, remote_path)
    return session.load_module(remote_path)


def save_arguments(artifact_path: str, arrays: list[np.ndarray], threads: int = 0) -> str:
    """Write a candidate's kernel arguments (in parameter order) beside its library.

    ``threads > 0`` asks :func:`run_vm_step` to size the device's thread pool first.
    """
    path = artifact_path + ARGS_SUFFIX
    named = {f"arg{i}": np.ascontiguousarray(a) for i, a in enumerate(arrays)}
    np.savez(path, threads=np.int64(threads), **named)
    return path


def alloc_arguments(
    session: Any, device: Any, args_info: Any, alloc_repeat: int
) -> list[list[Any]]:
    """``f_alloc_argument``: the real arguments of the uploaded candidate, on the device."""
    import tvm

    path = _STATE["local_path"] + ARGS_SUFFIX
    with np.load(path, allow_pickle=False) as data:
        count = sum(1 for name in data.files if name.startswith("arg"))
        arrays = [data[f"arg{i}"] for i in range(count)]
        _STATE["threads"] = str(int(data["threads"])) if "threads" in data.files else "0"
    if len(arrays) != len(args_info):
        raise ValueError(f"{path}: {len(arrays)} arrays for {len(args_info)} parameters")
    return [[tvm.runtime.tensor(a, device) for a in arrays] for _ in range(max(1, alloc_repeat))]


def run_evaluator(
    session: Any, rt_mod: Any, device: Any, evaluator_config: Any, repeated_args: list[Any]
) -> list[float]:
    """``f_run_evaluator``: seconds per call of the kernel entry, one value per repeat."""
    return _timed(rt_mod, ENTRY, device, evaluator_config, repeated_args)


def _timed(
    owner: Any, entry: str, device: Any, evaluator_config: Any, repeated_args: list[Any]
) -> list[float]:
    """Seconds per call of ``owner``'s ``entry`` (a module or a VM), one value per repeat."""
    evaluator = owner.time_evaluator(
        entry,
        device,
        number=evaluator_config.number,
        repeat=evaluator_config.repeat,
        min_repeat_ms=evaluator_config.min_repeat_ms,
    )
    costs: list[float] = []
    for args in repeated_args:
        device.sync()
        costs.extend(float(c) for c in evaluator(*args).results)
    return costs


def run_vm_step(
    session: Any, rt_mod: Any, device: Any, evaluator_config: Any, repeated_args: list[Any]
) -> list[float]:
    """``f_run_evaluator`` for a compiled RNN (Relax VM): seconds per ``step(x_t, state)``.

    Sizes the device's CPU thread pool to the candidate's ``threads`` first (TVM's x86
    default is half the logical CPUs).
    """
    from tvm.runtime.vm import VirtualMachine

    threads = int(_STATE.get("threads", "0"))
    if threads > 0:
        config = session.get_function("runtime.config_threadpool")
        config(-3, threads)  # -3: share all cores (a CPU list cannot cross RPC)
    vm = VirtualMachine(rt_mod, device)
    return _timed(vm, "step", device, evaluator_config, repeated_args)
