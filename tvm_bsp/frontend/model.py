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

``"lstm"`` with a projection (``torch.nn.LSTM(proj_size=P)``, ``weight_hr`` ``(P, H)``)
    ``m = σ(o) * tanh(c')``, ``h' = W_hr m``: the state ``h`` (and the layer output) has ``P``
    features, ``weight_hh`` is ``(4H, P)``; ``c`` keeps ``H``.

Directions: a layer with ``reverse=True`` reads its input from the last frame to the first
(its output is in input order again, as torch and ONNX define it). A *bidirectional* layer is
a forward layer whose ``backward`` is its reverse half (same cell and sizes); its output is
``concat(forward_out, backward_out)`` on the feature axis (``2 * S`` features, ``S`` = ``P``
for projected LSTMs, else ``H``), which the next layer or the head reads. Models with a
reverse direction have no ``step`` (a backward direction cannot stream):
:attr:`RNNModel.streamable` is False.

State layout (the ``state`` argument of ``forward`` / ``step``), with ``D`` = 2 for
bidirectional models and 1 otherwise, directions in torch's order (index ``k * D + d`` is
layer ``k``, direction ``d``; ``d = 1`` the backward half):

- GRUs: ``(layers * D, batch, H)``, as torch's ``h_n``;
- LSTMs: ``(layers * D, 2, batch, H)`` with ``[:, 0]`` = ``h`` and ``[:, 1]`` = ``c``
  (torch's ``h_n`` and ``c_n`` stacked on axis 1); for a projected LSTM ``h`` has ``P < H``
  features and fills ``[:, 0, :, :P]``, the rest ``[:, 0, :, P:]`` is zero (ignored on input,
  written as zeros).

The final state of a reverse direction is its state after the *first* frame (torch's ``h_n``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Recurrent cell types and their number of gates.
CELL_GATES: dict[str, int] = {"gru": 3, "kaldi_gru": 3, "lstm": 4}
#: Activations allowed between head layers (``softmax`` / ``log_softmax`` over the features).
HEAD_ACTIVATIONS = ("relu", "tanh", "sigmoid", "softmax", "log_softmax")


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
    reverse : bool
        This layer (direction) processes time reversed.
    backward : RNNLayer or None
        The reverse half of a bidirectional layer (same cell and sizes, ``reverse=True``,
        no ``backward`` of its own); only on a forward (``reverse=False``) layer.
    weight_hr : numpy.ndarray or None
        ``(P, H)`` LSTM projection (``"lstm"`` only); ``weight_hh`` is then ``(4H, P)``.
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
    reverse: bool = False
    backward: RNNLayer | None = None
    weight_hr: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.cell not in CELL_GATES:
            raise ValueError(f"unknown cell {self.cell!r}; cells are {sorted(CELL_GATES)}")
        self.weight_ih = _f32(self.weight_ih, "weight_ih")
        self.weight_hh = _f32(self.weight_hh, "weight_hh")
        self.reverse = bool(self.reverse)
        gh, width = self.weight_hh.shape if self.weight_hh.ndim == 2 else (0, 0)
        if self.weight_hr is not None:
            if self.cell != "lstm":
                raise ValueError(f"weight_hr (a projection) is for lstm layers, not {self.cell}")
            self.weight_hr = _f32(self.weight_hr, "weight_hr")
            hidden = gh // 4
            if self.weight_hr.ndim != 2 or self.weight_hr.shape != (width, hidden):
                raise ValueError(
                    f"weight_hr of an lstm layer with weight_hh {self.weight_hh.shape} must be "
                    f"(P, H) = ({width}, {hidden}), got {self.weight_hr.shape}"
                )
            if gh != 4 * hidden or hidden < 1 or width >= hidden:
                raise ValueError(
                    f"weight_hh of a projected lstm layer must be (4 * H, P) with P < H, "
                    f"got {self.weight_hh.shape}"
                )
        elif self.weight_hh.ndim != 2 or gh != self.gates * width or width < 1:
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
        if self.backward is not None:
            self._check_backward(self.backward)

    def _check_backward(self, back: RNNLayer) -> None:
        if not isinstance(back, RNNLayer):
            raise TypeError(f"backward must be an RNNLayer, got {type(back).__name__}")
        if self.reverse or not back.reverse or back.backward is not None:
            raise ValueError(
                "a bidirectional layer is a forward layer (reverse=False) whose backward half "
                f"has reverse=True and no backward of its own; got reverse={self.reverse}, "
                f"backward.reverse={back.reverse}"
            )
        mine = (self.cell, self.input_size, self.hidden_size, self.proj_size)
        theirs = (back.cell, back.input_size, back.hidden_size, back.proj_size)
        if mine != theirs:
            raise ValueError(
                "the backward half must match the forward one in (cell, input, hidden, proj): "
                f"expected {mine}, got {theirs}"
            )

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
        """Hidden (cell) units ``H``."""
        return int(self.weight_hh.shape[0]) // self.gates

    @property
    def proj_size(self) -> int:
        """LSTM projection size ``P`` (0 without a projection)."""
        return 0 if self.weight_hr is None else int(self.weight_hr.shape[0])

    @property
    def state_size(self) -> int:
        """Features of ``h`` and of each direction's output (``P`` if projected, else ``H``)."""
        return self.proj_size or self.hidden_size

    @property
    def num_directions(self) -> int:
        """2 for a bidirectional layer, else 1."""
        return 1 if self.backward is None else 2

    @property
    def output_size(self) -> int:
        """Output features per frame: ``state_size`` times the number of directions."""
        return self.state_size * self.num_directions

    def directions(self) -> list[RNNLayer]:
        """``[self]``, plus the backward half of a bidirectional layer."""
        return [self] if self.backward is None else [self, self.backward]

    def name(self, role: str, layer: int) -> str:
        """Parameter name of ``role`` (a default ``<role>_l<layer>[_reverse]`` if none given)."""
        return self.names.get(role, f"{role}_l{layer}" + ("_reverse" if self.reverse else ""))

    def roles(self) -> list[str]:
        """Weight roles of this direction: ``weight_ih``, ``weight_hh`` (+ ``weight_hr``)."""
        return ["weight_ih", "weight_hh"] + (["weight_hr"] if self.weight_hr is not None else [])


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
    """A head activation: elementwise ``"relu"``, ``"tanh"``, ``"sigmoid"``, or ``"softmax"`` /
    ``"log_softmax"`` over each frame's features."""

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
        At least one; all of the same cell, hidden size, projection and number of
        directions, layer ``k + 1`` reading the ``output_size`` features of layer ``k``.
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
            if not isinstance(layer, RNNLayer):
                raise TypeError(f"layer {k} is not an RNNLayer but {type(layer).__name__}")
            mine = (layer.cell, layer.hidden_size, layer.proj_size, layer.num_directions)
            ref = (first.cell, first.hidden_size, first.proj_size, first.num_directions)
            if mine != ref:
                raise ValueError(
                    "all recurrent layers must share (cell, hidden, proj, directions): layer 0 "
                    f"has {ref}, layer {k} has {mine}"
                )
            if k and layer.input_size != first.output_size:
                raise ValueError(
                    f"layer {k} reads {layer.input_size} features, layer {k - 1} gives "
                    f"{first.output_size}"
                )
        width = first.output_size
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
        """Hidden (cell) units per layer ``H``."""
        return self.layers[0].hidden_size

    @property
    def proj_size(self) -> int:
        """LSTM projection ``P`` (0 without one)."""
        return self.layers[0].proj_size

    @property
    def num_directions(self) -> int:
        """2 for bidirectional models, else 1."""
        return self.layers[0].num_directions

    @property
    def streamable(self) -> bool:
        """False if any direction runs time reversed (no ``step``: it cannot stream)."""
        return not any(d.reverse for layer in self.layers for d in layer.directions())

    @property
    def streamable_reason(self) -> str | None:
        """Why the model cannot stream (None if it can): its first reverse direction."""
        for _, k, d in self.directions():
            if d.reverse:
                kind = "bidirectional" if self.layers[k].backward is d else "reverse"
                return (
                    f"recurrent layer {k} is {kind}: its backward direction "
                    f"({d.name('weight_hh', k)}) reads the utterance from its end"
                )
        return None

    @property
    def rnn_output_size(self) -> int:
        """Features per frame of the last recurrent layer (what the head reads)."""
        return self.layers[-1].output_size

    @property
    def output_size(self) -> int:
        """Features per output frame (``rnn_output_size`` without a dense head)."""
        dense = [d for d in self.head if isinstance(d, DenseLayer)]
        return int(dense[-1].weight.shape[0]) if dense else self.rnn_output_size

    def state_shape(self, batch: int) -> tuple[int, ...]:
        """Shape of the recurrent state for ``batch`` sequences (see the module docstring)."""
        rows = self.num_layers * self.num_directions
        if self.cell == "lstm":
            return (rows, 2, batch, self.hidden_size)
        return (rows, batch, self.hidden_size)

    def directions(self) -> list[tuple[int, int, RNNLayer]]:
        """``(state index, layer index, direction)`` of every direction, in state order."""
        out = []
        for k, layer in enumerate(self.layers):
            for d, half in enumerate(layer.directions()):
                out.append((k * self.num_directions + d, k, half))
        return out

    def weights(self) -> dict[str, np.ndarray]:
        """Every weight matrix by parameter name (biases excluded)."""
        out: dict[str, np.ndarray] = {}
        for _, k, layer in self.directions():
            for role in layer.roles():
                out[layer.name(role, k)] = getattr(layer, role)
        for k, item in enumerate(self.head):
            if isinstance(item, DenseLayer):
                out[item.names.get("weight", f"head.{k}.weight")] = item.weight
        return out

    def masks(self) -> dict[str, np.ndarray]:
        """Pruning masks carried by the model, by parameter name."""
        out: dict[str, np.ndarray] = {}
        for _, k, layer in self.directions():
            for role, mask in layer.masks.items():
                out[layer.name(role, k)] = mask
        for k, item in enumerate(self.head):
            if isinstance(item, DenseLayer) and "weight" in item.masks:
                out[item.names.get("weight", f"head.{k}.weight")] = item.masks["weight"]
        return out
