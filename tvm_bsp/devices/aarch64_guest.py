"""Launch programs in the emulated aarch64 root: command lines, work directories, scripts.

:func:`guest_command` turns a guest ``argv`` into the host command of the current mode
(:func:`~tvm_bsp.devices.aarch64_root.guest_mode`):

- ``chroot``: ``unshare --mount --pid --fork --kill-child --mount-proc=ROOT/proc chroot ROOT
  ...``, so that the guest's ``/proc`` and every guest process disappear with the namespace
  (a plain ``chroot`` without ``/proc`` when ``unshare`` is refused);
- ``qemu``: ``qemu-aarch64-static`` runs the root's ``python3.11`` with
  ``QEMU_LD_PREFIX=ROOT`` and the venv on ``PYTHONPATH``.

:func:`run_in_arm64` runs a Python script in a fresh directory under ``ROOT/tmp`` and kills the
guest's whole process group on a timeout or an interrupt.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from tvm_bsp.devices.aarch64_root import (
    arm64_root,
    arm64_unavailable_reason,
    guest_mode,
    host_is_arm64,
    require_root,
)

__all__ = [
    "GUEST_PYTHON",
    "guest_command",
    "guest_path",
    "guest_workdir",
    "root_scratch_dir",
    "run_in_arm64",
    "run_script_in",
]

#: Python of the venv inside the root (guest path).
GUEST_PYTHON = "/opt/tvm-bsp-venv/bin/python3"
_GUEST_SITE = "/opt/tvm-bsp-venv/lib/python3.11/site-packages"
_GUEST_PATH = "/opt/tvm-bsp-venv/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


@functools.cache
def _unshare_works(root: str) -> bool:
    cmd = [*_unshare_prefix(root), "chroot", root, "/bin/true"]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _unshare_prefix(root: str) -> list[str]:
    return [
        "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        f"--mount-proc={root}/proc",
    ]


def guest_command(
    argv: Sequence[str], env: Mapping[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """Command line and environment that run a guest program in the aarch64 root.

    Parameters
    ----------
    argv : sequence of str
        Guest command; ``argv[0] == "python3"`` selects the root's TVM venv python. Paths in
        arguments must be guest paths (see :func:`guest_workdir`).
    env : mapping, optional
        Extra environment variables for the guest.

    Returns
    -------
    (list of str, dict)
        Host ``argv`` and the complete environment for :class:`subprocess.Popen`.
    """
    root = arm64_root()
    if root is None:
        raise RuntimeError(arm64_unavailable_reason())
    full_env = {
        "PATH": _GUEST_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TVM_USE_RUNTIME_LIB": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    full_env.update(env or {})
    argv = list(argv)
    if guest_mode() == "chroot":
        if argv[0] == "python3":
            argv[0] = GUEST_PYTHON
        prefix = _unshare_prefix(str(root)) if _unshare_works(str(root)) else []
        return [*prefix, "chroot", str(root), *argv], full_env
    # qemu mode: the root's interpreter with the venv on PYTHONPATH. The venv's python is an
    # absolute symlink to /usr/bin/python3 that would resolve to the host's interpreter.
    full_env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    full_env["QEMU_LD_PREFIX"] = str(root)
    full_env["PYTHONPATH"] = str(root) + _GUEST_SITE
    if argv[0] == "python3":
        argv[0] = str(root / "usr/bin/python3.11")
    qemu = [] if host_is_arm64() else ["qemu-aarch64-static"]
    return [*qemu, *argv], full_env


def guest_path(root: Path, host_path: Path) -> str:
    """The path under which the guest sees ``host_path``.

    Parameters
    ----------
    root : pathlib.Path
        The aarch64 root.
    host_path : pathlib.Path
        A path inside ``root``, as the host sees it.

    Returns
    -------
    str
        ``/``-rooted inside the root in chroot mode; the host path itself in qemu mode.
    """
    if guest_mode() == "chroot":
        return "/" + str(host_path.relative_to(root))
    return str(host_path)


@contextmanager
def root_scratch_dir(root: Path, keep: bool = False) -> Iterator[Path]:
    """A fresh directory under ``ROOT/tmp`` (host path), removed afterwards.

    Parameters
    ----------
    root : pathlib.Path
        The aarch64 root.
    keep : bool
        Leave the directory in place (debugging).

    Yields
    ------
    pathlib.Path
        The directory as the host sees it (mode 0755, so the guest can read it).
    """
    tmp = root / "tmp"
    path = Path(tempfile.mkdtemp(prefix="tvm-bsp-", dir=tmp))
    path.chmod(0o755)
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def guest_workdir(keep: bool = False) -> Iterator[tuple[Path, str]]:
    """A fresh directory the guest can use, e.g. as its ``TMPDIR``; removed afterwards.

    Parameters
    ----------
    keep : bool
        Leave the directory in place (debugging).

    Yields
    ------
    (pathlib.Path, str)
        The directory as the host sees it and as the guest sees it.
    """
    root = require_root()
    with root_scratch_dir(root, keep=keep) as path:
        yield path, guest_path(root, path)


def _run_guest(
    argv: list[str], env: dict[str, str], timeout: float | None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:  # timeout or KeyboardInterrupt: no guest process may survive
        _kill_group(proc)
        out, err = proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM then SIGKILL the process group of ``proc`` (started with a new session)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            # the leader is gone; reap stragglers of the group
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue


_BOOTSTRAP = (
    "import os, runpy, sys; os.chdir(sys.argv[1]); sys.argv = sys.argv[2:]; "
    "sys.path.insert(0, os.getcwd()); runpy.run_path(sys.argv[0], run_name='__main__')"
)


def run_in_arm64(
    script: str,
    files: Mapping[str, str | os.PathLike[str]] | None = None,
    args: Sequence[str] = (),
    *,
    timeout: float | None = 300.0,
    env: Mapping[str, str] | None = None,
    check: bool = False,
    keep: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a Python script inside the aarch64 root with the aarch64 TVM runtime.

    The script and ``files`` are copied into a fresh directory under ``ROOT/tmp``, which is
    the script's working directory (and first on ``sys.path``); the directory is removed
    afterwards unless ``keep``.

    Parameters
    ----------
    script : str
        Python source, run as ``__main__`` (dedented).
    files : mapping of str to path, optional
        ``{name in the work directory: host file}`` copied in before the run.
    args : sequence of str
        ``sys.argv[1:]`` of the script.
    timeout : float or None
        Seconds before the guest is killed (with all its children) and
        :class:`subprocess.TimeoutExpired` is raised.
    env : mapping, optional
        Extra guest environment variables (``TVM_USE_RUNTIME_LIB=1`` is set by default).
    check : bool
        Raise :class:`subprocess.CalledProcessError` on a non-zero exit status.
    keep : bool
        Keep the work directory (for debugging); its path is printed to stderr.

    Returns
    -------
    subprocess.CompletedProcess
        With ``stdout`` and ``stderr`` as text.
    """
    root = require_root()
    with root_scratch_dir(root, keep=keep) as work:
        return run_script_in(root, work, script, files, args, timeout, env, check, keep)


def run_script_in(
    root: Path,
    work: Path,
    script: str,
    files: Mapping[str, str | os.PathLike[str]] | None,
    args: Sequence[str],
    timeout: float | None,
    env: Mapping[str, str] | None,
    check: bool,
    keep: bool,
) -> subprocess.CompletedProcess[str]:
    """Run a Python script in an existing work directory of the root (see :func:`run_in_arm64`).

    Parameters
    ----------
    root : pathlib.Path
        The aarch64 root.
    work : pathlib.Path
        A directory under ``ROOT/tmp`` (:func:`root_scratch_dir`); it becomes the script's
        working directory and receives ``files`` and ``__main__.py``.
    script, files, args, timeout, env, check, keep
        As for :func:`run_in_arm64` (``keep`` only prints the directory here).

    Returns
    -------
    subprocess.CompletedProcess
        With ``stdout`` and ``stderr`` as text.

    Raises
    ------
    ValueError
        If a file name leaves the work directory.
    """
    for name, src in (files or {}).items():
        dest = (work / name).resolve()
        if work.resolve() not in dest.parents:
            raise ValueError(f"file name {name!r} escapes the work directory")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    (work / "__main__.py").write_text(textwrap.dedent(script))
    guest_work = guest_path(root, work)
    argv, full_env = guest_command(
        ["python3", "-c", _BOOTSTRAP, guest_work, f"{guest_work}/__main__.py", *args], env
    )
    if keep:
        print(f"[tvm_bsp.devices.aarch64] work directory kept: {work}", file=sys.stderr)
    result = _run_guest(argv, full_env, timeout)
    if check:
        result.check_returncode()
    return result
