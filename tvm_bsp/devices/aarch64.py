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

import numpy as np

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

#: Completion marker written by ``scripts/setup_aarch64_emulator.sh``.
MARKER = ".tvm-bsp-emulator-ready"
#: Python of the venv inside the root (guest path).
GUEST_PYTHON = "/opt/tvm-bsp-venv/bin/python3"
_GUEST_SITE = "/opt/tvm-bsp-venv/lib/python3.11/site-packages"
_GUEST_PATH = "/opt/tvm-bsp-venv/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
_SETUP_HINT = "run `sudo scripts/setup_aarch64_emulator.sh` (about 5 minutes)"


def _default_root() -> Path:
    return Path(__file__).resolve().parents[2] / ".cache" / "arm64-root"


def _configured_root() -> Path:
    env = os.environ.get("TVM_BSP_ARM64_ROOT")
    return Path(env).absolute() if env else _default_root()


def _mode() -> str:
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
    if _host_is_arm64():
        return True
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    try:
        return entry.read_text().startswith("enabled")
    except OSError:
        return False


def _host_is_arm64() -> bool:
    return os.uname().machine in ("aarch64", "arm64")


def arm64_unavailable_reason() -> str | None:
    """Why the aarch64 emulator cannot be used, or ``None`` if it can.

    Returns
    -------
    str or None
        A human-readable reason (for ``pytest.skip``), ``None`` when :func:`arm64_root`
        returns a path.
    """
    root = _configured_root()
    if not (root / MARKER).is_file():
        return f"aarch64 root not set up at {root} (no {MARKER}); {_SETUP_HINT}"
    mode = _mode()
    if mode == "chroot":
        if os.geteuid() != 0:
            return "TVM_BSP_ARM64_MODE=chroot needs root"
        if shutil.which("chroot") is None:
            return "chroot not found"
        if not binfmt_registered():
            return f"qemu-aarch64 is not registered with binfmt_misc; {_SETUP_HINT}"
    elif not _host_is_arm64() and shutil.which("qemu-aarch64-static") is None:
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
    return _configured_root()


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
    return _configured_root()


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
    if _mode() == "chroot":
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
    qemu = [] if _host_is_arm64() else ["qemu-aarch64-static"]
    return [*qemu, *argv], full_env


def _guest_path(root: Path, host_path: Path) -> str:
    """Path under which the guest sees ``host_path`` (a path inside ``root``)."""
    if _mode() == "chroot":
        return "/" + str(host_path.relative_to(root))
    return str(host_path)


@contextmanager
def _guest_workdir(root: Path, keep: bool = False) -> Iterator[Path]:
    """A fresh directory under ``ROOT/tmp`` (host path), removed afterwards."""
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
    with _guest_workdir(root, keep=keep) as path:
        yield path, _guest_path(root, path)


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
    with _guest_workdir(root, keep=keep) as work:
        return _run_script(root, work, script, files, args, timeout, env, check, keep)


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


def _run_script(
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
    for name, src in (files or {}).items():
        dest = (work / name).resolve()
        if work.resolve() not in dest.parents:
            raise ValueError(f"file name {name!r} escapes the work directory")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    (work / "__main__.py").write_text(textwrap.dedent(script))
    guest_work = _guest_path(root, work)
    argv, full_env = guest_command(
        ["python3", "-c", _BOOTSTRAP, guest_work, f"{guest_work}/__main__.py", *args], env
    )
    if keep:
        print(f"[tvm_bsp.devices.aarch64] work directory kept: {work}", file=sys.stderr)
    result = _run_guest(argv, full_env, timeout)
    if check:
        result.check_returncode()
    return result


_FUNCTION_SCRIPT = """
import json, sys
import numpy as np
import tvm

spec = json.load(open("spec.json"))
lib = tvm.runtime.load_module(spec["lib"])
dev = tvm.cpu(0)
inputs = [tvm.runtime.tensor(np.load(f, allow_pickle=False), dev) for f in spec["inputs"]]
if spec["relax"]:
    from tvm.runtime.vm import VirtualMachine

    vm = VirtualMachine(lib, dev)
    result = vm[spec["func"]](*inputs)
    stack, outs = [result], []
    while stack:  # flatten nested tuples depth first, left to right
        item = stack.pop(0)
        if isinstance(item, tvm.runtime.Tensor):
            outs.append(item)
        else:
            stack[:0] = list(item)
else:
    outs = [tvm.runtime.tensor(np.zeros(s, dtype=d), dev)
            for s, d in zip(spec["out_shapes"], spec["out_dtypes"])]
    lib[spec["func"]](*inputs, *outs)
for i, t in enumerate(outs):
    np.save(f"out{i}.npy", t.numpy(), allow_pickle=False)
print(json.dumps({"outputs": len(outs)}))
"""


def run_arm64_function(
    so_path: str | os.PathLike[str],
    func_name: str,
    inputs: Sequence[np.ndarray],
    output_shapes: Sequence[Sequence[int]] = (),
    output_dtypes: Sequence[str] | str = "float32",
    *,
    relax: bool = False,
    timeout: float | None = 300.0,
) -> list[np.ndarray]:
    """Load an aarch64 TVM library in the emulator, call one function, return its outputs.

    Parameters
    ----------
    so_path : str or os.PathLike
        Library made by :func:`tvm_bsp.deploy.cross.export_arm64` (or any
        ``tvm.runtime.load_module``-able aarch64 ``.so``).
    func_name : str
        Function to call (``"main"`` for ``tvm.compile`` of a PrimFunc; the Relax function
        name with ``relax=True``).
    inputs : sequence of numpy.ndarray
        Input arrays.
    output_shapes : sequence of shapes
        PrimFunc modules use destination passing: the function is called as
        ``f(*inputs, *outputs)`` with zero-filled outputs of these shapes. Ignored with
        ``relax=True`` (the VM returns its results).
    output_dtypes : str or sequence of str
        One dtype for all outputs, or one per output.
    relax : bool
        The library is a Relax VM executable: call
        ``VirtualMachine(lib, tvm.cpu())[func_name](*inputs)``; tuple results are flattened.
    timeout : float or None
        Seconds before the guest is killed.

    Returns
    -------
    list of numpy.ndarray
        The outputs after the call.
    """
    import json

    root = require_root()
    if isinstance(output_dtypes, str):
        output_dtypes = [output_dtypes] * len(output_shapes)
    if len(output_dtypes) != len(output_shapes):
        raise ValueError("output_dtypes and output_shapes differ in length")
    if not relax and not output_shapes:
        raise ValueError("output_shapes is required for destination-passing PrimFunc modules")
    with _guest_workdir(root) as work:
        files: dict[str, str | os.PathLike[str]] = {"lib.so": so_path}
        names = []
        for i, arr in enumerate(inputs):
            name = f"in{i}.npy"
            np.save(work / name, np.ascontiguousarray(arr), allow_pickle=False)
            names.append(name)
        spec = {
            "lib": "lib.so",
            "func": func_name,
            "inputs": names,
            "relax": relax,
            "out_shapes": [list(map(int, s)) for s in output_shapes],
            "out_dtypes": [str(np.dtype(d)) for d in output_dtypes],
        }
        (work / "spec.json").write_text(json.dumps(spec))
        res = _run_script(root, work, _FUNCTION_SCRIPT, files, (), timeout, None, False, False)
        if res.returncode != 0:
            raise RuntimeError(
                f"aarch64 run of {func_name} in {so_path} failed (exit {res.returncode}):\n"
                f"{res.stderr[-4000:]}"
            )
        count = json.loads(res.stdout.strip().splitlines()[-1])["outputs"]
        return [np.load(work / f"out{i}.npy", allow_pickle=False) for i in range(count)]
