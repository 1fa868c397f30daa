"""The public names of tvm_bsp.speech resolve (they are imported lazily)."""

from __future__ import annotations

import subprocess
import sys

import tvm_bsp.speech as speech


def test_every_export_resolves() -> None:
    for name in speech.__all__:
        assert getattr(speech, name) is not None, name
    assert set(speech.__all__) <= set(dir(speech))


def test_synthesis_modules_do_not_import_torch() -> None:
    code = "import sys, tvm_bsp.speech.render, tvm_bsp.speech.plan; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
