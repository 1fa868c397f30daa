"""The model description: what the importer extracts from a torch module.

A :class:`RNNModel` is a stack of recurrent layers of one cell type followed by a head of
dense (``Linear``) layers and elementwise activations. Everything is plain numpy (float32), so
the description is independent of torch and can be built by hand.

Cells and their equations (``x`` the layer input, ``h`` the state, ``σ`` the logistic
function; weights stack the gates row-wise, biases likewise):

``"gru"`` (``torch.nn.GRU``; gates ``r, z, n``)
    ``r = σ(W_r x + b_ir + U_r h + b_hr)``, ``z = σ(W_z x + b_iz + U_z h + b_hz)``,
    ``n = tanh(W_n x + b_in + r * (U_n h + b_hn))``, ``h' = (1 - z) * n + z * h``.
``"kaldi_gru"`` (pytorch-kaldi's GRU as RTMobile used it; gates ``r, z, n``)
    ``r``, ``z`` as above (no recurrent bias), ``n = s * tanh(W_n x + b_in + U_n (r * h))``
    with ``s = candidate_scale`` (``1 - dropout`` at test time), ``h' = (1 - z) * n + z * h``.
    Batch-norm of the input projection is folded into ``weight_ih`` / ``bias_ih``.
``"lstm"`` (``torch.nn.LSTM``; gates ``i, f, g, o``)
    ``c' = σ(f) * c + σ(i) * tanh(g)``, ``h' = σ(o) * tanh(c')`` with every gate
    ``W x + b_i + U h + b_h``.

State layout (the ``state`` argument of ``forward`` / ``step``): ``(layers, batch, hidden)``
for GRUs, ``(layers, 2, batch, hidden)`` for LSTMs with ``[:, 0]`` = ``h`` and ``[:, 1]`` =
``c``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Recurrent cell types and their number of gates.
CELL_GATES: dict[str, int] = {"gru": 3, "kaldi_gru": 3, "lstm": 4}
#: Elementwise activations allowed between head layers.
HEAD_ACTIVATIONS = ("relu", "tanh", "sigmoid")


def _f32(a: object, what: str) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} has NaN or infinite entries")
    return arr


@dataclass
class RNNLayer:
    """One recurrent layer.

    Attributes
    ----------
    cell : str
        ``"gru"``, ``"kaldi_gru"`` or ``"lstm"`` (see the module docstring).
    weight_ih : numpy.ndarray
        ``(G * H, I)`` input weights, gates stacked (``G`` = 3 or 4).
    weight_hh : numpy.ndarray
        ``(G * H, H)`` recurrent weights.
    bias_ih, bias_hh : numpy.ndarray or None
        ``(G * H,)`` biases; ``bias_hh`` must be ``None`` for ``"kaldi_gru"``.
    candidate_scale : float
        ``s`` of the kaldi GRU candidate (1 for the other cells).
    names : dict
        Parameter name of each weight/bias role (``"weight_ih"``, ...), as the source module
        spells it (e.g. ``"rnn.weight_hh_l0"``); BSPC weights are matched by these names.
    masks : dict
        Boolean pruning masks by role (from ``WeightMask`` parametrizations), if any.
    row_scale : dict
        Per-row factors already folded into a weight by role (batch-norm), so a BSPC matrix
        of the unfolded weight can be compared with and scaled to the folded one.
    """

    cell: str
    weight_ih: np.ndarray
    weight_hh: np.ndarray
    bias_ih: np.ndarray | None = None
    bias_hh: np.ndarray | None = None
    candidate_scale: float = 1.0
    names: dict[str, str] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    row_scale: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cell not in CELL_GATES:
            raise ValueError(f"unknown cell {self.cell!r}; cells are {sorted(CELL_GATES)}")
        self.weight_ih = _f32(self.weight_ih, "weight_ih")
        self.weight_hh = _f32(self.weight_hh, "weight_hh")
        gh, hidden = self.weight_hh.shape if self.weight_hh.ndim == 2 else (0, 0)
        if self.weight_hh.ndim != 2 or gh != self.gates * hidden:
            raise ValueError(
                f"weight_hh of a {self.cell} layer must be ({self.gates} * H, H), "
                f"got {self.weight_hh.shape}"
            )
        if self.weight_ih.ndim != 2 or self.weight_ih.shape[0] != gh:
            raise ValueError(f"weight_ih must be ({gh}, input), got {self.weight_ih.shape}")
        for role in ("bias_ih", "bias_hh"):
            value = getattr(self, role)
            if value is not None:
                value = _f32(value, role)
                if value.shape != (gh,):
                    raise ValueError(f"{role} must have shape ({gh},), got {value.shape}")
                setattr(self, role, value)
        if self.cell == "kaldi_gru" and self.bias_hh is not None:
            raise ValueError("a kaldi_gru layer has no recurrent bias (bias_hh must be None)")
        if self.cell != "kaldi_gru" and self.candidate_scale != 1.0:
            raise ValueError("candidate_scale applies to kaldi_gru layers only")
        self.candidate_scale = float(self.candidate_scale)

    @property
    def gates(self) -> int:
        """Number of stacked gates (3 for GRUs, 4 for LSTMs)."""
        return CELL_GATES[self.cell]

    @property
    def input_size(self) -> int:
        """Input features ``I``."""
        return int(self.weight_ih.shape[1])

    @property
    def hidden_size(self) -> int:
        """Hidden units ``H``."""
        return int(self.weight_hh.shape[1])

    def name(self, role: str, layer: int) -> str:
        """Parameter name of ``role`` (a default ``<role>_l<layer>`` if the source had none)."""
        return self.names.get(role, f"{role}_l{layer}")


@dataclass
class DenseLayer:
    """A ``Linear`` head layer, ``y = x W^T + b``.

    Attributes
    ----------
    weight : numpy.ndarray
        ``(out_features, in_features)``.
    bias : numpy.ndarray or None
        ``(out_features,)``.
    names : dict
        Parameter names of ``"weight"`` / ``"bias"`` in the source module.
    masks : dict
        Boolean pruning mask of ``"weight"``, if any.
    """

    weight: np.ndarray
    bias: np.ndarray | None = None
    names: dict[str, str] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.weight = _f32(self.weight, "weight")
        if self.weight.ndim != 2:
            raise ValueError(f"a dense weight must be 2-D, got {self.weight.shape}")
        if self.bias is not None:
            self.bias = _f32(self.bias, "bias")
            if self.bias.shape != (self.weight.shape[0],):
                raise ValueError(f"bias must have shape ({self.weight.shape[0]},)")


@dataclass
class Activation:
    """An elementwise activation between head layers (``"relu"``, ``"tanh"``, ``"sigmoid"``)."""

    kind: str

    def __post_init__(self) -> None:
        if self.kind not in HEAD_ACTIVATIONS:
            raise ValueError(f"unknown activation {self.kind!r}; known: {HEAD_ACTIVATIONS}")


HeadLayer = DenseLayer | Activation


@dataclass
class RNNModel:
    """A recurrent stack plus a head (see the module docstring).

    Attributes
    ----------
    layers : list of RNNLayer
        At least one; all of the same cell and hidden size, layer ``k + 1`` reading the
        ``H`` outputs of layer ``k``.
    head : list of DenseLayer or Activation
        Applied to every frame's output of the last layer, in order.
    batch_first : bool
        Inputs and outputs of ``forward`` are ``(B, T, .)`` instead of ``(T, B, .)``.
    """

    layers: list[RNNLayer]
    head: list[HeadLayer] = field(default_factory=list)
    batch_first: bool = False

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("an RNNModel needs at least one recurrent layer")
        first = self.layers[0]
        for k, layer in enumerate(self.layers):
            if layer.cell != first.cell or layer.hidden_size != first.hidden_size:
                raise ValueError("all recurrent layers must share the cell type and hidden size")
            if k and layer.input_size != first.hidden_size:
                raise ValueError(
                    f"layer {k} reads {layer.input_size} features, layer {k - 1} gives "
                    f"{first.hidden_size}"
                )
        width = first.hidden_size
        for k, item in enumerate(self.head):
            if isinstance(item, DenseLayer):
                if item.weight.shape[1] != width:
                    raise ValueError(
                        f"head layer {k} expects {item.weight.shape[1]} features, gets {width}"
                    )
                width = item.weight.shape[0]
            elif not isinstance(item, Activation):
                raise TypeError(f"head item {k} is neither a DenseLayer nor an Activation")

    @property
    def cell(self) -> str:
        """The cell type of every layer."""
        return self.layers[0].cell

    @property
    def num_layers(self) -> int:
        """Number of recurrent layers ``L``."""
        return len(self.layers)

    @property
    def input_size(self) -> int:
        """Features per input frame."""
        return self.layers[0].input_size

    @property
    def hidden_size(self) -> int:
        """Hidden units per layer ``H``."""
        return self.layers[0].hidden_size

    @property
    def output_size(self) -> int:
        """Features per output frame (``H`` without a dense head)."""
        dense = [d for d in self.head if isinstance(d, DenseLayer)]
        return int(dense[-1].weight.shape[0]) if dense else self.hidden_size

    def state_shape(self, batch: int) -> tuple[int, ...]:
        """Shape of the recurrent state for ``batch`` sequences (see the module docstring)."""
        if self.cell == "lstm":
            return (self.num_layers, 2, batch, self.hidden_size)
        return (self.num_layers, batch, self.hidden_size)

    def weights(self) -> dict[str, np.ndarray]:
        """Every weight matrix by parameter name (biases excluded)."""
        out: dict[str, np.ndarray] = {}
        for k, layer in enumerate(self.layers):
            out[layer.name("weight_ih", k)] = layer.weight_ih
            out[layer.name("weight_hh", k)] = layer.weight_hh
        for k, item in enumerate(self.head):
            if isinstance(item, DenseLayer):
                out[item.names.get("weight", f"head.{k}.weight")] = item.weight
        return out

    def masks(self) -> dict[str, np.ndarray]:
        """Pruning masks carried by the model, by parameter name."""
        out: dict[str, np.ndarray] = {}
        for k, layer in enumerate(self.layers):
            for role, mask in layer.masks.items():
                out[layer.name(role, k)] = mask
        for k, item in enumerate(self.head):
            if isinstance(item, DenseLayer) and "weight" in item.masks:
                out[item.names.get("weight", f"head.{k}.weight")] = item.masks["weight"]
        return out
