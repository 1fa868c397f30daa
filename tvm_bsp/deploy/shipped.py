"""What ``tvm-bsp deploy`` copies to a device besides the ``.so``: the runtime package.

A device needs python3, numpy and the TVM runtime, plus ``tvm_bsp/__init__.py`` and every
module of :mod:`tvm_bsp.runtime` (which imports nothing else of ``tvm_bsp``: checked by
``tests/test_package_layers.py``). The emulated arm64 runs, the device command that
``tvm-bsp deploy`` prints and the tests that run the runtime alone take their files from
:func:`runtime_files`.
"""

from __future__ import annotations

from pathlib import Path

#: The module the device runs: ``python3 -m tvm_bsp.runtime.runner model.so ...``.
RUNNER_MODULE = "tvm_bsp.runtime.runner"

_PACKAGE = Path(__file__).resolve().parents[1]


def runtime_files() -> dict[str, Path]:
    """The ``tvm_bsp`` files a device needs to load and run an exported model.

    Returns
    -------
    dict
        ``{path relative to the device's working directory: source file}``:
        ``tvm_bsp/__init__.py`` and ``tvm_bsp/runtime/*.py``.
    """
    files = {"tvm_bsp/__init__.py": _PACKAGE / "__init__.py"}
    for path in sorted((_PACKAGE / "runtime").glob("*.py")):
        files[f"tvm_bsp/runtime/{path.name}"] = path
    return files
