"""Cross compilation for 64-bit ARM Linux/Android-class CPUs (aarch64 + NEON).

``arm64_target()`` is the LLVM target TVM generates aarch64 code for; ``export_arm64`` links
the result into a shared library with the GNU cross toolchain (Debian
``g++-aarch64-linux-gnu``) so that an aarch64 TVM runtime can ``load_module`` it: a phone, a
board, or the qemu-user root of ``scripts/setup_aarch64_emulator.sh``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["ARM64_CXX", "arm64_target", "export_arm64"]

#: Cross C++ compiler used to link aarch64 shared libraries (override: ``TVM_BSP_ARM64_CXX``).
ARM64_CXX = "aarch64-linux-gnu-g++"


def arm64_target(
    mattr: tuple[str, ...] | list[str] = ("+neon",), *, mcpu: str | None = None
) -> Any:
    """LLVM target for aarch64 Linux with NEON.

    Parameters
    ----------
    mattr : sequence of str
        LLVM feature flags; NEON (Advanced SIMD) is mandatory on ARMv8-A.
    mcpu : str, optional
        LLVM CPU name (e.g. ``"cortex-a76"``) to tune scheduling for a specific core.

    Returns
    -------
    tvm.target.Target
        ``Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": [...]})`` (keys
        ``arm_cpu``, ``cpu``).
    """
    import tvm

    config: dict[str, Any] = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": list(mattr)}
    if mcpu is not None:
        config["mcpu"] = mcpu
    return tvm.target.Target(config)


def _cross_cxx() -> str:
    cxx = os.environ.get("TVM_BSP_ARM64_CXX", ARM64_CXX)
    if shutil.which(cxx) is None:
        raise FileNotFoundError(
            f"{cxx} not found; install g++-aarch64-linux-gnu "
            "(scripts/setup_aarch64_emulator.sh does) or set TVM_BSP_ARM64_CXX"
        )
    return cxx


def export_arm64(lib_or_executable: Any, path: str | os.PathLike[str]) -> Path:
    """Export a module built for :func:`arm64_target` as an aarch64 shared library.

    The file appears atomically: it is linked to a temporary name in the destination directory
    and moved into place with :func:`os.replace`, so a reader never sees a partial library.

    Parameters
    ----------
    lib_or_executable : tvm.runtime.Executable or tvm.runtime.Module
        Result of ``tvm.compile(..., target=arm64_target())`` (a PrimFunc library or a Relax
        VM executable), or its ``.mod``.
    path : str or os.PathLike
        Destination ``.so`` path; parent directories are created.

    Returns
    -------
    pathlib.Path
        The absolute path of the written library.
    """
    from tvm.support import cc

    from tvm_bsp.runtime.files import atomic_output

    dest = Path(path).absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A fresh cross_compiler per call: TVM's closure appends per-call options to its shared
    # option list, so reusing one instance accumulates flags across exports.
    fcompile = cc.cross_compiler(_cross_cxx(), options=[])
    with (
        atomic_output(dest, ".so") as tmp,
        tempfile.TemporaryDirectory(prefix="tvm-bsp-export-") as work,
    ):
        lib_or_executable.export_library(str(tmp), fcompile=fcompile, workspace_dir=work)
    return dest
