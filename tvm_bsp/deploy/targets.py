"""Named deploy targets: the TVM target, the compiler that links the ``.so``, where it runs.

=================  ===========================================  ==============================
name               TVM target (JSON dict form)                  ``.so`` linked by
=================  ===========================================  ==============================
``host``           ``llvm`` with this CPU's ``mcpu``            the system compiler (TVM's)
``arm64``          ``llvm``, ``aarch64-linux-gnu``, ``+neon``   ``aarch64-linux-gnu-g++``
``android-arm64``  ``llvm``, ``aarch64-linux-android``          the NDK compiler ``$TVM_NDK_CC``
``opencl-mali``    ``opencl`` (``mali``), aarch64 Linux host    ``aarch64-linux-gnu-g++``
``opencl-adreno``  ``opencl`` (``adreno``), aarch64 Android     the NDK compiler ``$TVM_NDK_CC``
=================  ===========================================  ==============================

``arm64`` and ``opencl-mali`` use :mod:`tvm_bsp.deploy.cross` (override the compiler with
``TVM_BSP_ARM64_CXX``); the Android targets use :mod:`tvm.support.ndk`, which needs
``TVM_NDK_CC`` (e.g. ``$NDK/toolchains/llvm/prebuilt/linux-x86_64/bin/
aarch64-linux-android28-clang``). :func:`export_library` writes the file atomically.
:func:`tvm_bsp.kernels.targets.resolve_target` keeps resolving ``host``, ``arm64`` and the
OpenCL names for the kernels; this module adds Android and the export/run facts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEPLOY_TARGETS",
    "NDK_ENV",
    "DeployTarget",
    "deploy_target_of",
    "export_library",
    "get_deploy_target",
    "ndk_compiler",
]

#: Environment variable naming the Android NDK compiler (as :mod:`tvm.support.ndk` reads it).
NDK_ENV = "TVM_NDK_CC"

_ARM64_LINUX = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
_ARM64_ANDROID = {"kind": "llvm", "mtriple": "aarch64-linux-android", "mattr": ["+neon"]}


def _machine() -> str:
    return os.uname().machine


def _host_dict() -> dict[str, Any]:
    from tvm.target import codegen

    return {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu())}


@dataclass(frozen=True)
class DeployTarget:
    """One named deploy target.

    Attributes
    ----------
    name : str
        ``host``, ``arm64``, ``android-arm64``, ``opencl-mali`` or ``opencl-adreno``.
    description : str
        One line for ``--help`` and error messages.
    config : dict or None
        The TVM target in JSON dict form (``None`` for ``host``: detected, see :meth:`target`).
    linker : str
        ``"system"`` (TVM's default compiler), ``"gnu-aarch64"`` or ``"ndk"``.
    cpu_arch : str
        Instruction set of the code's CPU side (``"aarch64"``, or this machine's for host).
    os : str
        ``"linux"`` or ``"android"``.
    """

    name: str
    description: str
    config: dict[str, Any] | None
    linker: str
    cpu_arch: str
    os: str
    opencl: bool = field(default=False)

    def target_dict(self) -> dict[str, Any]:
        """The TVM target as a JSON dict (the host's ``mcpu`` is detected here)."""
        return _host_dict() if self.config is None else _copy(self.config)

    def target(self) -> Any:
        """The :class:`tvm.target.Target`."""
        import tvm

        return tvm.target.Target(self.target_dict())

    def compiler(self) -> str:
        """The program that links the ``.so`` (for messages; checked by :meth:`check_compiler`)."""
        if self.linker == "ndk":
            return os.environ.get(NDK_ENV, f"${NDK_ENV} (unset)")
        if self.linker == "gnu-aarch64" and _machine() not in ("aarch64", "arm64"):
            from tvm_bsp.deploy.cross import ARM64_CXX

            return os.environ.get("TVM_BSP_ARM64_CXX", ARM64_CXX)
        return "the system C++ compiler (tvm.support.cc)"

    def check_compiler(self) -> None:
        """Raise a clear error if the linker of this target is not available.

        Raises
        ------
        ValueError
            For an Android target when ``TVM_NDK_CC`` is unset.
        FileNotFoundError
            When the compiler program is not found.
        """
        if self.linker == "ndk":
            ndk_compiler()
        elif self.linker == "gnu-aarch64" and _machine() not in ("aarch64", "arm64"):
            from tvm_bsp.deploy.cross import _cross_cxx

            _cross_cxx()

    @property
    def runs_here(self) -> bool:
        """True when this process can load and run the ``.so`` natively."""
        if self.opencl or self.os != "linux":
            return False
        return self.config is None or self.cpu_arch == _arm_or(_machine())

    @property
    def emulated_here(self) -> bool:
        """True when the ``.so`` runs here under qemu (``arm64`` with the emulator set up)."""
        if self.runs_here or self.opencl or self.os != "linux" or self.cpu_arch != "aarch64":
            return False
        from tvm_bsp.devices.aarch64 import arm64_root

        return arm64_root() is not None


def _arm_or(machine: str) -> str:
    return "aarch64" if machine in ("aarch64", "arm64") else machine


def _copy(config: dict[str, Any]) -> dict[str, Any]:
    return {k: (_copy(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
            for k, v in config.items()}  # fmt: skip


DEPLOY_TARGETS: dict[str, DeployTarget] = {
    t.name: t
    for t in (
        DeployTarget("host", "this machine's CPU (LLVM, detected mcpu)", None, "system",
                     _arm_or(_machine()), "linux"),
        DeployTarget("arm64", "aarch64 Linux with NEON (GNU cross compiler)", _ARM64_LINUX,
                     "gnu-aarch64", "aarch64", "linux"),
        DeployTarget("android-arm64", "aarch64 Android with NEON (NDK compiler from "
                     f"{NDK_ENV})", _ARM64_ANDROID, "ndk", "aarch64", "android"),
        DeployTarget("opencl-mali", "OpenCL on an ARM Mali GPU, aarch64 Linux host",
                     {"kind": "opencl", "device": "mali", "host": _ARM64_LINUX},
                     "gnu-aarch64", "aarch64", "linux", opencl=True),
        DeployTarget("opencl-adreno", "OpenCL on a Qualcomm Adreno GPU, aarch64 Android host",
                     {"kind": "opencl", "device": "adreno", "host": _ARM64_ANDROID},
                     "ndk", "aarch64", "android", opencl=True),
    )
}  # fmt: skip


def get_deploy_target(name: str) -> DeployTarget:
    """Look up a named deploy target.

    Parameters
    ----------
    name : str
        One of :data:`DEPLOY_TARGETS`.

    Returns
    -------
    DeployTarget

    Raises
    ------
    ValueError
        Naming the unknown target and the known names.
    """
    try:
        return DEPLOY_TARGETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown target {name!r}; choose from {', '.join(DEPLOY_TARGETS)}"
        ) from None


def deploy_target_of(target: Any) -> DeployTarget:
    """The named deploy target whose export fits a :class:`tvm.target.Target`.

    ``llvm`` targets map by triple (``*-android*`` -> ``android-arm64``, other aarch64 ->
    ``arm64``, anything else -> ``host``); ``opencl`` targets by their host's triple
    (Android -> ``opencl-adreno``, else ``opencl-mali``). For
    :meth:`tvm_bsp.compiler.CompiledModel.export`-like callers that hold a Target, not a name.
    """
    kind = target.kind.name
    cpu = target.host if kind != "llvm" and target.host is not None else target
    triple = str(cpu.attrs.get("mtriple", "")) if cpu.kind.name == "llvm" else ""
    android = "android" in triple
    if kind == "opencl":
        return DEPLOY_TARGETS["opencl-adreno" if android else "opencl-mali"]
    if triple.startswith(("aarch64", "arm64")):
        return DEPLOY_TARGETS["android-arm64" if android else "arm64"]
    return DEPLOY_TARGETS["host"]


def ndk_compiler() -> str:
    """The Android NDK compiler named by ``TVM_NDK_CC``.

    Raises
    ------
    ValueError
        If ``TVM_NDK_CC`` is unset or empty.
    FileNotFoundError
        If it names no executable program.
    """
    cc = os.environ.get(NDK_ENV, "")
    if not cc:
        raise ValueError(
            f"android targets need the NDK compiler: set {NDK_ENV} to it, e.g. "
            f"{NDK_ENV}=$ANDROID_NDK/toolchains/llvm/prebuilt/linux-x86_64/bin/"
            "aarch64-linux-android28-clang"
        )
    if shutil.which(cc) is None:
        raise FileNotFoundError(f"{NDK_ENV}={cc} is not an executable program")
    return cc


def _ndk_fcompile() -> Callable[..., Any]:
    ndk_compiler()
    from tvm.support import ndk

    return ndk.create_shared


def export_library(executable: Any, target_name: str, path: str | os.PathLike[str]) -> Path:
    """Link a compiled module into a ``.so`` for a named target, atomically.

    Parameters
    ----------
    executable : tvm.runtime.Executable or tvm.runtime.Module
        ``tvm.compile(...)`` output (e.g. ``CompiledModel.executable``) for that target.
    target_name : str
        A name of :data:`DEPLOY_TARGETS`; selects the compiler.
    path : str or os.PathLike
        Destination; parent directories are created. A reader never sees a partial file.

    Returns
    -------
    pathlib.Path
        The absolute path written.

    Raises
    ------
    ValueError
        Unknown target, or ``TVM_NDK_CC`` unset for an Android target.
    FileNotFoundError
        The compiler is missing.

    Notes
    -----
    The library gets the SHA-256 of its packed weights compiled in
    (:data:`tvm_bsp.runtime.files.WEIGHTS_SYMBOL`), and the sidecar ``PATH.json`` records its
    size, SHA-256, machine and weights digest (:func:`tvm_bsp.runtime.files.library_record`);
    :func:`tvm_bsp.runtime.load` checks them before loading.
    """
    deploy = get_deploy_target(target_name)
    deploy.check_compiler()
    from tvm_bsp.runtime.files import atomic_output, library_record
    from tvm_bsp.runtime.labels import write_library_record

    if deploy.linker == "gnu-aarch64" and _machine() not in ("aarch64", "arm64"):
        from tvm.support import cc

        from tvm_bsp.deploy.cross import _cross_cxx

        # a fresh cross_compiler per call: TVM's closure accumulates per-call options
        kwargs: dict[str, Any] = {"fcompile": cc.cross_compiler(_cross_cxx(), options=[])}
    elif deploy.linker == "ndk":
        kwargs = {"fcompile": _ndk_fcompile()}
    else:
        kwargs = {}
    dest = Path(path).absolute()
    with (
        atomic_output(dest, ".so") as tmp,
        tempfile.TemporaryDirectory(prefix="tvm-bsp-export-") as work,
    ):
        addons = _weights_addon(executable, Path(work))
        executable.export_library(str(tmp), workspace_dir=work, addons=addons, **kwargs)
    write_library_record(dest, library_record(dest), deploy.name)
    return dest


def _weights_addon(executable: Any, work: Path) -> list[str]:
    """A C file defining the SHA-256 of the packed imports (weights), or none without them."""
    import hashlib

    import tvm

    from tvm_bsp.runtime.files import weights_source

    mod = getattr(executable, "mod", executable)
    if not mod.imports_:  # nothing packed (see tvm.runtime.Module.export_library)
        return []
    blob = tvm.get_global_func("runtime.ModulePackImportsToTensor")(mod).numpy().tobytes()
    source = work / "tvm_bsp_weights.c"
    source.write_text(weights_source(hashlib.sha256(blob).hexdigest()), encoding="utf-8")
    return [str(source)]
