"""Find the emulated aarch64 root and decide whether (and how) programs can run in it.

``scripts/setup_aarch64_emulator.sh`` builds the root (default ``<repo>/.cache/arm64-root``,
or ``$TVM_BSP_ARM64_ROOT``) and leaves :data:`MARKER` in it when done. :func:`guest_mode`
picks ``chroot`` or ``qemu`` (see :mod:`tvm_bsp.devices.aarch64`);
:func:`arm64_unavailable_reason` says why neither can run here. Nothing is launched by this
module.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = [
    "MARKER",
    "arm64_root",
    "arm64_unavailable_reason",
    "binfmt_registered",
    "configured_root",
    "guest_mode",
    "host_is_arm64",
    "require_arm64",
    "require_root",
]

#: Completion marker written by ``scripts/setup_aarch64_emulator.sh``.
MARKER = ".tvm-bsp-emulator-ready"
_SETUP_HINT = "run `sudo scripts/setup_aarch64_emulator.sh` (about 5 minutes)"


def _default_root() -> Path:
    return Path(__file__).resolve().parents[2] / ".cache" / "arm64-root"


def configured_root() -> Path:
    """The root directory the configuration names, set up or not.

    Returns
    -------
    pathlib.Path
        ``$TVM_BSP_ARM64_ROOT`` (made absolute) or ``<repo>/.cache/arm64-root``.
    """
    env = os.environ.get("TVM_BSP_ARM64_ROOT")
    return Path(env).absolute() if env else _default_root()


def guest_mode() -> str:
    """How guest programs are launched: ``"chroot"`` or ``"qemu"``.

    Returns
    -------
    str
        ``$TVM_BSP_ARM64_MODE`` when set, else ``"chroot"`` as root with binfmt_misc
        registered and ``"qemu"`` otherwise.

    Raises
    ------
    ValueError
        If ``$TVM_BSP_ARM64_MODE`` names another mode.
    """
    mode = os.environ.get("TVM_BSP_ARM64_MODE", "")
    if mode in ("chroot", "qemu"):
        return mode
    if mode:
        raise ValueError(f"TVM_BSP_ARM64_MODE must be 'chroot' or 'qemu', not {mode!r}")
    return "chroot" if os.geteuid() == 0 and binfmt_registered() else "qemu"


def binfmt_registered() -> bool:
    """Whether the kernel runs aarch64 executables directly (native, or qemu via binfmt_misc).

    Returns
    -------
    bool
        ``True`` on an aarch64 host or when ``qemu-aarch64`` is registered and enabled. Guest
        programs that start other guest programs (the RPC server's ``popen_worker``) need it.
    """
    if host_is_arm64():
        return True
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    try:
        return entry.read_text().startswith("enabled")
    except OSError:
        return False


def host_is_arm64() -> bool:
    """Whether this machine is aarch64 itself (guest programs then run natively).

    Returns
    -------
    bool
        ``True`` for an ``aarch64`` / ``arm64`` kernel.
    """
    return os.uname().machine in ("aarch64", "arm64")


def arm64_unavailable_reason() -> str | None:
    """Why the aarch64 emulator cannot be used, or ``None`` if it can.

    Returns
    -------
    str or None
        A human-readable reason (for ``pytest.skip``), ``None`` when :func:`arm64_root`
        returns a path.
    """
    root = configured_root()
    if not (root / MARKER).is_file():
        return f"aarch64 root not set up at {root} (no {MARKER}); {_SETUP_HINT}"
    mode = guest_mode()
    if mode == "chroot":
        if os.geteuid() != 0:
            return "TVM_BSP_ARM64_MODE=chroot needs root"
        if shutil.which("chroot") is None:
            return "chroot not found"
        if not binfmt_registered():
            return f"qemu-aarch64 is not registered with binfmt_misc; {_SETUP_HINT}"
    elif not host_is_arm64() and shutil.which("qemu-aarch64-static") is None:
        return "qemu-aarch64-static not found (apt-get install qemu-user-static)"
    return None


def arm64_root() -> Path | None:
    """The emulated aarch64 root, or ``None`` when it is not set up or cannot run here.

    Returns
    -------
    pathlib.Path or None
        ``$TVM_BSP_ARM64_ROOT`` or ``<repo>/.cache/arm64-root`` if it carries the setup
        script's completion marker and programs can be launched in it.
    """
    if arm64_unavailable_reason() is not None:
        return None
    return configured_root()


def require_arm64() -> Path:
    """Return the aarch64 root or skip the calling pytest test with the reason.

    Returns
    -------
    pathlib.Path
        The root directory.
    """
    reason = arm64_unavailable_reason()
    if reason is not None:
        import pytest

        pytest.skip(reason)
    return configured_root()


def require_root() -> Path:
    """The aarch64 root for library code (tests use :func:`require_arm64`, which skips).

    Returns
    -------
    pathlib.Path
        The root directory.

    Raises
    ------
    RuntimeError
        With the reason, when the emulator is not usable.
    """
    root = arm64_root()
    if root is None:
        raise RuntimeError(arm64_unavailable_reason())
    return root
