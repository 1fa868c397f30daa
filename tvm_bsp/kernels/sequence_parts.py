"""The parts every recurrent sequence kernel has, whatever its target and weight form.

- :func:`sequence_inputs` / :func:`sequence_outputs`: the leading ``xp, state`` and trailing
  ``y, hT[, cT]`` parameters (the weights, target-specific, go between);
- :class:`CellBuffers`: where the cell statements (:mod:`tvm_bsp.kernels.cell_math`) read and
  write, so the double-buffered state (``hb[t % 2]`` read, ``hb[(t + 1) % 2]`` written) is
  laid out once for every target.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import tirx
from tvm.script.ir_builder import tirx as T

from tvm_bsp.kernels.tir_build import Params, size_var


def sequence_inputs(
    hidden: int, gates: int, lstm: bool
) -> tuple[Params, tirx.Var, tirx.Var, tirx.Buffer, tirx.Buffer]:
    """The leading parameters of every sequence kernel: ``xp (T, B, G*H)`` and ``state``.

    ``state`` is the stacked state of all layers, ``(L, B, H)`` or ``(L, 2, B, H)`` for the
    LSTM. Also marks the function ``noalias``. Returns ``(param, nt, nb, XP, S0)``: the
    :class:`Params` the target continues with (its weights), and the symbolic ``T`` and ``B``.
    """
    T.func_attr({"tirx.noalias": True})
    nt, nb = size_var("nt"), size_var("nb")
    param = Params()
    XP = param("xp", (nt, nb, gates * hidden))
    S0 = param("state", (T.int64(), 2, nb, hidden) if lstm else (T.int64(), nb, hidden))
    return param, nt, nb, XP, S0


def sequence_outputs(
    param: Params, nt: tirx.Var, nb: tirx.Var, hidden: int, lstm: bool, width: int = 0
) -> tuple[tirx.Buffer, tirx.Buffer, tirx.Buffer | None]:
    """The trailing parameters of every sequence kernel: ``y (T, B, width or H)``, ``hT``
    ``(B, H)`` and, for the LSTM, ``cT (B, H)`` (``None`` otherwise)."""
    Y = param("y", (nt, nb, width or hidden))
    HT = param("hT", (nb, hidden))
    CT = param("cT", (nb, hidden)) if lstm else None
    return Y, HT, CT


@dataclass
class CellBuffers:
    """What the cell statements (:mod:`tvm_bsp.kernels.cell_math`) read and write, by role.

    ``None`` where the cell has no such buffer. Every target's lane resolves the statements'
    loads and destinations (all but the scratch ``s0`` .. ``s3``) through :meth:`load` and
    :meth:`target`, so the state layout (``hb[t % 2]`` read, ``hb[(t + 1) % 2]`` written) is
    written once.
    """

    hidden: int
    XP: tirx.Buffer
    Y: tirx.Buffer
    hb: tirx.Buffer
    BHN: tirx.Buffer | None = None
    cb: tirx.Buffer | None = None
    rh: tirx.Buffer | None = None
    az: tirx.Buffer | None = None
    M: tirx.Buffer | None = None

    def _at(self, name: str, t, b, u) -> tuple[tirx.Buffer, list]:
        return {
            "h": lambda: (self.hb, [t % 2, b, u]),
            "h_new": lambda: (self.hb, [(t + 1) % 2, b, u]),
            "y": lambda: (self.Y, [t, b, u]),
            "c": lambda: (self.cb, [b, u]),
            "rh": lambda: (self.rh, [0, b, u]),
            "az": lambda: (self.az, [b, u]),
            "m": lambda: (self.M, [0, b, u]),
            "bhn": lambda: (self.BHN, [u]),
        }[name]()

    def load(self, name: str, t, b, u) -> tirx.Expr:
        """The value ``name`` (``h``, ``h_new``, ``c``, ``az``, ``bhn``) of unit ``u`` of ``b``."""
        buffer, index = self._at(name, t, b, u)
        return buffer[tuple(index)]

    def target(self, dst: str, t, b, u) -> tuple[tirx.Buffer, list]:
        """``(buffer, index)`` of destination ``dst`` (``h`` is the new state ``hb[(t+1) % 2]``)."""
        return self._at("h_new" if dst == "h" else dst, t, b, u)
