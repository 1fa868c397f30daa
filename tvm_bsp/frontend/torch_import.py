"""Import torch modules into an :class:`~tvm_bsp.frontend.model.RNNModel`.

Accepted module shapes
----------------------
1. A recurrent module on its own: ``torch.nn.GRU``, ``torch.nn.LSTM`` (any number of
   layers, unidirectional or ``bidirectional=True``, LSTM ``proj_size`` >= 0, ``batch_first``
   either way, with or without biases) or :class:`~tvm_bsp.frontend.kaldi_gru.KaldiGRU`.
2. A cell on its own: ``torch.nn.GRUCell`` / ``torch.nn.LSTMCell``, imported as a one-layer
   RNN: the compiled ``step`` is the cell (``state`` ``(1, B, H)`` / ``(1, 2, B, H)``, as in
   :mod:`tvm_bsp.frontend.model`), ``forward`` over ``T`` frames applies it ``T`` times.
3. A container whose ``forward`` applies one recurrent module to its input and then head
   ops to the sequence, e.g. ``self.rnn`` then ``self.head`` like
   :class:`tvm_bsp.speech.model.AcousticModel`. The forward is *traced* (``torch.fx``, see
   :mod:`tvm_bsp.frontend.torch_forward`), so the head is what the forward calls, in call
   order, not the list of children: head ops are ``nn.Linear``, ``nn.ReLU`` / ``nn.Tanh`` /
   ``nn.Sigmoid`` (or ``relu`` / ``tanh`` / ``sigmoid`` functions), ``softmax`` /
   ``log_softmax`` over the last axis, and ``nn.Identity`` / ``nn.Dropout`` (identities at
   inference). Any other op (on the input, between the layers, after the head) is refused
   by name.
4. An :class:`RNNModel` (returned unchanged).

Anything else raises :class:`UnsupportedModuleError` naming the offending module. The import
has inference semantics: batch-norm uses its running statistics, dropout is off (the kaldi GRU
candidate is scaled by ``1 - dropout``). Weights under a pruning mask parametrization (a
``torch.nn.utils.parametrize`` entry with a boolean ``mask`` buffer) are read masked, and the
masks are kept in the description.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tvm_bsp.frontend.kaldi_gru import KaldiGRU
from tvm_bsp.frontend.model import Activation, DenseLayer, HeadLayer, RNNLayer, RNNModel
from tvm_bsp.frontend.torch_forward import UnsupportedModuleError, forward_plan

_ACTIVATIONS: dict[type, str] = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
_IDENTITIES = (nn.Identity, nn.Dropout)
_RNNS = (nn.GRU, nn.LSTM, KaldiGRU)
_CELLS = (nn.GRUCell, nn.LSTMCell)

__all__ = ["UnsupportedModuleError", "from_torch", "select_submodule"]


def from_torch(module: nn.Module | RNNModel, prefix: str = "") -> RNNModel:
    """Describe a torch module (see the module docstring for accepted shapes).

    Parameters
    ----------
    module : torch.nn.Module or RNNModel
    prefix : str
        Put before every parameter name (``"decoder."`` when ``module`` is the ``decoder``
        of a bigger model), so names match the whole model's (BSPC files, masks).

    Returns
    -------
    RNNModel

    Raises
    ------
    UnsupportedModuleError
        For an ``nn.RNN``, an unknown layer, or a container whose forward is not "one RNN
        then head ops".
    """
    if isinstance(module, RNNModel):
        return module
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected a torch.nn.Module or an RNNModel, got {type(module).__name__}")
    with torch.no_grad():
        if isinstance(module, _RNNS):
            layers, batch_first = _import_rnn(module, prefix)
            return RNNModel(layers, [], batch_first)
        if isinstance(module, _CELLS):
            return RNNModel([_import_cell(module, prefix)], [])
        if isinstance(module, nn.RNNBase | nn.RNNCellBase):
            raise UnsupportedModuleError(
                f"{type(module).__name__} is not supported; recurrent modules are nn.GRU, "
                "nn.LSTM, KaldiGRU, nn.GRUCell and nn.LSTMCell"
            )
        return _import_container(module, prefix)


def select_submodule(module: nn.Module, name: str) -> nn.Module:
    """The submodule ``name`` (a dotted path, ``"decoder.rnn"``) of ``module``.

    Raises
    ------
    TypeError
        If ``module`` is not a torch module.
    ValueError
        If there is no such submodule; the message lists the recurrent modules and their
        containers that could be compiled instead.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"submodule= needs a torch.nn.Module, got {type(module).__name__}")
    try:
        return module.get_submodule(name)
    except AttributeError:
        rnns = [path for path, m in module.named_modules() if isinstance(m, _RNNS + _CELLS)]
        parents = {p.rpartition(".")[0] for p in rnns if "." in p}
        options = sorted(set(rnns) | parents)
        raise ValueError(
            f"{type(module).__name__} has no submodule {name!r}; recurrent modules and their "
            f"containers: {options}"
        ) from None


# ---------------------------------------------------------------------- containers
def _import_container(module: nn.Module, prefix: str) -> RNNModel:
    kind = type(module).__name__
    if not list(module.children()):
        raise UnsupportedModuleError(
            f"{kind} is neither nn.GRU, nn.LSTM nor KaldiGRU and has no child modules"
        )
    plan = forward_plan(module)
    rnn = module.get_submodule(plan.rnn)
    layers, batch_first = _import_rnn(rnn, f"{prefix}{plan.rnn}.")
    head: list[HeadLayer] = []
    for path, item in plan.head:
        if isinstance(item, str):
            head.append(Activation(item))
        elif isinstance(item, nn.Linear):
            head.append(_import_linear(item, f"{prefix}{path}."))
        elif type(item) in _ACTIVATIONS:
            head.append(Activation(_ACTIVATIONS[type(item)]))
        elif isinstance(item, _IDENTITIES):
            continue
        else:
            _check_not_rnn(str(path), item)
            raise UnsupportedModuleError(
                f"'{path}' ({type(item).__name__}) is not a supported head layer; heads are "
                "nn.Linear, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity and nn.Dropout"
            )
    return RNNModel(layers, head, batch_first)


def _check_not_rnn(path: str, child: nn.Module) -> None:
    if isinstance(child, nn.RNNBase):
        raise UnsupportedModuleError(
            f"'{path}' is {type(child).__name__}; only GRU, LSTM and KaldiGRU are supported"
        )


# ---------------------------------------------------------------------- parameters
def _read(module: nn.Module, attr: str, prefix: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The tensor ``module.<attr>`` as the forward sees it (masked), and its mask if any."""
    value = getattr(module, attr)
    mask = None
    parametrizations = getattr(module, "parametrizations", None)
    if parametrizations is not None and attr in parametrizations:
        for p in parametrizations[attr]:
            m = getattr(p, "mask", None)
            if isinstance(m, torch.Tensor) and m.dtype == torch.bool:
                mask = m.detach().cpu().numpy().copy()
    arr = value.detach().cpu().to(torch.float32).numpy().copy()
    if mask is not None and mask.shape != arr.shape:
        raise UnsupportedModuleError(f"'{prefix}{attr}': mask shape differs from the weight")
    return arr, mask


def _import_linear(linear: nn.Linear, prefix: str) -> DenseLayer:
    weight, mask = _read(linear, "weight", prefix)
    names = {"weight": f"{prefix}weight"}
    bias = None
    if linear.bias is not None:
        bias, _ = _read(linear, "bias", prefix)
        names["bias"] = f"{prefix}bias"
    return DenseLayer(weight, bias, names, {"weight": mask} if mask is not None else {})


def _import_rnn(rnn: nn.Module, prefix: str) -> tuple[list[RNNLayer], bool]:
    label = prefix.rstrip(".") or type(rnn).__name__
    if isinstance(rnn, KaldiGRU):
        return [_kaldi_layer(rnn, k, prefix) for k in range(rnn.num_layers)], rnn.batch_first
    if not isinstance(rnn, nn.GRU | nn.LSTM):
        raise UnsupportedModuleError(
            f"'{label}' is {type(rnn).__name__}; only GRU, LSTM and KaldiGRU are supported"
        )
    cell = "gru" if isinstance(rnn, nn.GRU) else "lstm"
    roles = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    if getattr(rnn, "proj_size", 0):
        roles.append("weight_hr")
    layers = []
    for k in range(rnn.num_layers):
        suffixes = ["", "_reverse"] if rnn.bidirectional else [""]
        halves = [_read_layer(rnn, cell, roles, f"_l{k}{sfx}", prefix) for sfx in suffixes]
        layers.append(halves[0])
        if len(halves) == 2:
            halves[0].backward = halves[1]
            halves[0].__post_init__()  # validates the pair
    return layers, rnn.batch_first


def _read_layer(rnn: nn.Module, cell: str, roles: list[str], suffix: str, prefix: str):
    values: dict[str, np.ndarray | None] = {}
    names: dict[str, str] = {}
    masks: dict[str, np.ndarray] = {}
    for role in roles:
        attr = f"{role}{suffix}"
        if role.startswith("bias") and not rnn.bias:
            values[role] = None
            continue
        values[role], mask = _read(rnn, attr, prefix)
        names[role] = f"{prefix}{attr}"
        if mask is not None:
            masks[role] = mask
    reverse = suffix.endswith("_reverse")
    return RNNLayer(cell, names=names, masks=masks, reverse=reverse, **values)


def _import_cell(cell: nn.RNNCellBase, prefix: str) -> RNNLayer:
    kind = "gru" if isinstance(cell, nn.GRUCell) else "lstm"
    return _read_layer(cell, kind, ["weight_ih", "weight_hh", "bias_ih", "bias_hh"], "", prefix)


def _kaldi_layer(rnn: KaldiGRU, k: int, prefix: str) -> RNNLayer:
    names = {"weight_ih": f"{prefix}weight_ih_l{k}", "weight_hh": f"{prefix}weight_hh_l{k}"}
    w_ih, m_ih = _read(rnn, f"weight_ih_l{k}", prefix)
    w_hh, m_hh = _read(rnn, f"weight_hh_l{k}", prefix)
    masks = {role: m for role, m in (("weight_ih", m_ih), ("weight_hh", m_hh)) if m is not None}
    bias = None
    if rnn.bias:
        bias, _ = _read(rnn, f"bias_ih_l{k}", prefix)
        names["bias_ih"] = f"{prefix}bias_ih_l{k}"
    row_scale: dict[str, np.ndarray] = {}
    if rnn.batchnorm:
        scale, shift = _bn_affine(rnn.bn[k], f"{prefix}bn.{k}")
        w_ih = w_ih * scale[:, None]
        bias = shift if bias is None else bias * scale + shift
        row_scale["weight_ih"] = scale
        names.setdefault("bias_ih", f"{prefix}bn.{k}.folded_bias")
    return RNNLayer(
        "kaldi_gru",
        w_ih,
        w_hh,
        bias,
        None,
        candidate_scale=1.0 - rnn.dropout,
        names=names,
        masks=masks,
        row_scale=row_scale,
    )


def _bn_affine(bn: nn.BatchNorm1d, label: str) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, shift)`` with ``bn(v) == v * scale + shift`` in evaluation mode."""
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedModuleError(f"'{label}' has no running statistics to fold")
    mean = bn.running_mean.detach().double().cpu().numpy()
    var = bn.running_var.detach().double().cpu().numpy()
    gamma = bn.weight.detach().double().cpu().numpy() if bn.weight is not None else 1.0
    beta = bn.bias.detach().double().cpu().numpy() if bn.bias is not None else 0.0
    scale = gamma / np.sqrt(var + bn.eps)
    shift = beta - mean * scale
    return scale.astype(np.float32), np.broadcast_to(shift, mean.shape).astype(np.float32)
