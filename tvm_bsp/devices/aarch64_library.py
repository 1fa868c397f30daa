"""Call one function of a cross-compiled aarch64 TVM library inside the emulated root.

:func:`run_arm64_function` copies the library into a work directory of the root, saves the
inputs as ``.npy`` files (loaded with ``allow_pickle=False``), runs a small guest script that
loads the library with the aarch64 TVM runtime and calls the function (a PrimFunc with
destination passing, or a Relax VM function), and loads the outputs back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from tvm_bsp.devices.aarch64_guest import root_scratch_dir, run_script_in
from tvm_bsp.devices.aarch64_root import require_root

__all__ = ["run_arm64_function"]

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

    Raises
    ------
    ValueError
        If ``output_dtypes`` and ``output_shapes`` differ in length, or a PrimFunc call has
        no ``output_shapes``.
    RuntimeError
        If the emulator is not usable or the guest run fails (with the end of its stderr).
    """
    root = require_root()
    if isinstance(output_dtypes, str):
        output_dtypes = [output_dtypes] * len(output_shapes)
    if len(output_dtypes) != len(output_shapes):
        raise ValueError("output_dtypes and output_shapes differ in length")
    if not relax and not output_shapes:
        raise ValueError("output_shapes is required for destination-passing PrimFunc modules")
    with root_scratch_dir(root) as work:
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
        res = run_script_in(root, work, _FUNCTION_SCRIPT, files, (), timeout, None, False, False)
        if res.returncode != 0:
            raise RuntimeError(
                f"aarch64 run of {func_name} in {so_path} failed (exit {res.returncode}):\n"
                f"{res.stderr[-4000:]}"
            )
        count = json.loads(res.stdout.strip().splitlines()[-1])["outputs"]
        return [np.load(work / f"out{i}.npy", allow_pickle=False) for i in range(count)]
