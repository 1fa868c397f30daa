"""``tvm_bsp.runtime.load(path)``: open an exported RNN module with the TVM runtime only.

The exported ``.so`` embeds the weights (constants of the executable), so it is the only file
to ship (its sidecar ``model.so.json`` holds the labels and what the export recorded of the
file). Importing this module pulls in numpy and ``tvm.runtime``, nothing else of the compiler
and never torch (set ``TVM_USE_RUNTIME_LIB=1`` on a device that has only the runtime).

Before the file is handed to ``dlopen`` it is checked
(:func:`tvm_bsp.runtime.files.check_library`): the size and SHA-256 recorded at export, the
ELF header and bounds (a truncated library would kill the process with a bus error), the
machine (an arm64 build on x86 says so and how to run it), that it is a TVM library, and the
SHA-256 of its weights. A library without a record (older exports, or copied without its
sidecar) still loads, with a :class:`UserWarning` that it cannot be verified.
This module is callable (``tvm_bsp.runtime.load(path)`` works as well as
``tvm_bsp.runtime.load.load(path)``).
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from pathlib import Path
from typing import Any

from tvm_bsp.runtime.files import check_library
from tvm_bsp.runtime.labels import read_library_record
from tvm_bsp.runtime.session import Session, import_tvm


def load(path: str | os.PathLike[str], device: Any = None, threads: int | None = None) -> Session:
    """Load an exported RNN module.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.so`` written by ``CompiledModel.export``.
    device : tvm.runtime.Device or str, optional
        Defaults to ``tvm.cpu(0)``. A module compiled for an OpenCL target runs with
        ``device="opencl"`` (``tvm.opencl(0)``; the runtime on the device must have OpenCL,
        the Python wheel on x86 has not).
    threads : int, optional
        TVM CPU threads (default: the module's ``meta["threads"]``, see :class:`Session`).

    Returns
    -------
    Session
        ``forward(x, h0=None)``, ``step(x_t, h=None)``, ``push(x_t)``, ``reset()``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the library is truncated, corrupted, built for another machine, not a TVM library,
        or not a tvm_bsp RNN module (:class:`~tvm_bsp.runtime.files.LibraryCheckError` for the
        file checks).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no compiled module at {path}")
    check_file(path)
    tvm = import_tvm()
    if isinstance(device, str):
        try:
            device = tvm.device(device, 0)
        except Exception as err:  # TVMError / ValueError naming the unknown kind
            raise ValueError(f"unknown device {device!r}: {err}") from None
    try:
        module = tvm.runtime.load_module(str(path))
    except Exception as err:  # TVMError, OSError from dlopen: a bad file or another ISA
        raise ValueError(f"cannot load {path} as a TVM module: {err}") from None
    return Session(module, device, threads)


def check_file(path: str | os.PathLike[str], here: bool = True) -> None:
    """Check a library against its sidecar's record (warn when it has none); see the module
    docstring. ``here=False`` skips the machine check (an upload to an RPC device)."""
    record = read_library_record(path)
    target = record.get("target") if record else None
    for message in check_library(path, record, target, here):
        warnings.warn(message, UserWarning, stacklevel=3)


class _CallableModule(types.ModuleType):
    def __call__(
        self, path: str | os.PathLike[str], device: Any = None, threads: int | None = None
    ) -> Session:
        return load(path, device, threads)


sys.modules[__name__].__class__ = _CallableModule
