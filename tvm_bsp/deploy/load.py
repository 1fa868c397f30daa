"""``tvm_bsp.deploy.load(path)``: open an exported RNN module with the TVM runtime only.

The exported ``.so`` embeds the weights (constants of the executable), so it is the only file
to ship. Importing this module pulls in numpy and ``tvm.runtime``, nothing else of the
compiler or of torch (set ``TVM_USE_RUNTIME_LIB=1`` on a device that has only the runtime).
This module is callable (``tvm_bsp.deploy.load(path)`` works as well as
``tvm_bsp.deploy.load.load(path)``).
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Any

from tvm_bsp.deploy.session import Session


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
        If the library is not a tvm_bsp RNN module.
    """
    import tvm

    path = Path(path)
    if isinstance(device, str):
        try:
            device = tvm.device(device, 0)
        except Exception as err:  # TVMError / ValueError naming the unknown kind
            raise ValueError(f"unknown device {device!r}: {err}") from None
    if not path.is_file():
        raise FileNotFoundError(f"no compiled module at {path}")
    try:
        module = tvm.runtime.load_module(str(path))
    except Exception as err:  # TVMError, OSError from dlopen: a bad file or another ISA
        raise ValueError(f"cannot load {path} as a TVM module: {err}") from None
    return Session(module, device, threads)


class _CallableModule(types.ModuleType):
    def __call__(
        self, path: str | os.PathLike[str], device: Any = None, threads: int | None = None
    ) -> Session:
        return load(path, device, threads)


sys.modules[__name__].__class__ = _CallableModule
