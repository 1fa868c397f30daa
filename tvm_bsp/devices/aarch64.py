"""Run Python and cross-compiled TVM libraries inside the emulated aarch64 root.

``scripts/setup_aarch64_emulator.sh`` builds a Debian bookworm arm64 root (default
``<repo>/.cache/arm64-root``, or ``$TVM_BSP_ARM64_ROOT``) with the aarch64 TVM wheel in a venv
at ``/opt/tvm-bsp-venv``. Programs in it run under qemu-user:

- ``chroot`` mode (default when running as root): ``unshare --mount --pid --fork
  --kill-child --mount-proc=ROOT/proc chroot ROOT python3 ...``. The private mount namespace
  gives the guest a ``/proc`` that disappears with the namespace (nothing can leak into the
  host mount table), and the pid namespace takes every guest process down with the first one.
  If ``unshare`` is refused, a plain ``chroot`` without ``/proc`` is used.
- ``qemu`` mode (not root, binfmt_misc not registered, or ``TVM_BSP_ARM64_MODE=qemu``):
  ``qemu-aarch64-static`` runs the root's ``python3.11`` with ``QEMU_LD_PREFIX=ROOT`` and the
  venv on ``PYTHONPATH``; the guest sees the host file system, with the root's libraries
  taking precedence. Guest programs that spawn guest programs need binfmt_misc here too.

Arrays cross the boundary as ``.npy`` files (loaded with ``allow_pickle=False``), never as
pickles. The guest imports TVM with ``TVM_USE_RUNTIME_LIB=1`` (runtime only, ~2 s).

The helpers are split by job; this module is the entry point and re-exports the public names:

- :mod:`tvm_bsp.devices.aarch64_root`: where the root is, whether and how it can run here
  (:func:`arm64_root`, :func:`arm64_unavailable_reason`, :func:`require_arm64`, ...);
- :mod:`tvm_bsp.devices.aarch64_guest`: launch guest programs (:func:`guest_command`,
  :func:`guest_workdir`, :func:`run_in_arm64`);
- :mod:`tvm_bsp.devices.aarch64_library`: call one function of a cross-compiled library
  (:func:`run_arm64_function`).
"""

from __future__ import annotations

from tvm_bsp.devices.aarch64_guest import GUEST_PYTHON, guest_command, guest_workdir, run_in_arm64
from tvm_bsp.devices.aarch64_library import run_arm64_function
from tvm_bsp.devices.aarch64_root import (
    MARKER,
    arm64_root,
    arm64_unavailable_reason,
    binfmt_registered,
    require_arm64,
    require_root,
)

__all__ = [
    "GUEST_PYTHON",
    "MARKER",
    "arm64_root",
    "arm64_unavailable_reason",
    "binfmt_registered",
    "guest_command",
    "guest_workdir",
    "require_arm64",
    "require_root",
    "run_arm64_function",
    "run_in_arm64",
]
