"""Read what a container's ``forward`` really computes, from its ``torch.fx`` graph.

The importer must not guess from the list of children: a ``forward`` may scale the input,
apply a function after the head, or leave a registered layer unused. :func:`forward_plan`
traces the container symbolically (recurrent modules and head layers are leaves) and accepts
exactly this shape of graph::

    x [, state] -> RNN(x [, state]) -> y -> head op -> ... -> head op -> return y [, h_n]

where a head op is a call of an ``nn.Linear`` / activation / identity module (in any order,
registered anywhere), or of ``relu`` / ``tanh`` / ``sigmoid`` (``torch.*``, ``F.*`` or the
tensor method), or ``softmax`` / ``log_softmax`` over the last axis. Everything else (an op
on the input or the state, a second RNN, a branch, a value returned that is not the head's
output) raises :class:`UnsupportedModuleError` naming the op and where it occurs.
"""

from __future__ import annotations

import inspect
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from tvm_bsp.frontend.kaldi_gru import KaldiGRU


class UnsupportedModuleError(ValueError):
    """A module (named in the message) that the importer cannot translate."""


_RNNS = (nn.GRU, nn.LSTM, KaldiGRU)
_LEAVES = (nn.RNNBase, nn.RNNCellBase, KaldiGRU, nn.Linear, nn.Identity, nn.Dropout)
#: Head functions by callable / method name -> activation kind.
_FUNCTIONS = {
    torch.relu: "relu",
    F.relu: "relu",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    torch.softmax: "softmax",
    F.softmax: "softmax",
    torch.log_softmax: "log_softmax",
    F.log_softmax: "log_softmax",
}
_METHODS = {n: n for n in ("relu", "tanh", "sigmoid", "softmax", "log_softmax")}
_SOFTMAXES = ("softmax", "log_softmax")


@dataclass
class ForwardPlan:
    """What a container's forward does.

    Attributes
    ----------
    rnn : str
        Path of the recurrent module (``"decoder.rnn"``).
    head : list of (str or None, nn.Module or str)
        Head ops in call order: ``(path, module)`` for module calls, ``(None, kind)`` for
        functions (``"relu"``, ..., ``"softmax"``, ``"log_softmax"``).
    """

    rnn: str
    head: list[tuple[str | None, nn.Module | str]]


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _LEAVES) or super().is_leaf_module(m, qualname)


def _trace(module: nn.Module) -> fx.Graph:
    kind = type(module).__name__
    try:
        return _Tracer().trace(module)
    except Exception as first:  # any trace failure is re-raised below
        params = list(inspect.signature(module.forward).parameters.values())[1:]
        concrete = {p.name: None for p in params if p.default is None}
        if concrete:
            try:
                return _Tracer().trace(module, concrete_args=concrete)
            except Exception:  # reported with the first error
                pass
        raise UnsupportedModuleError(
            f"cannot verify the forward of {kind} by tracing it with torch.fx ({first}); "
            "compile its recurrent part with compile_model(..., submodule=NAME) or write a "
            "forward that only applies the RNN and then the head layers"
        ) from first


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module '{node.target}'"
    if node.op == "call_method":
        return f"method .{node.target}()"
    target = getattr(node.target, "__name__", str(node.target))
    return f"function {target}()"


def _softmax_dim(node: fx.Node) -> object:
    if "dim" in node.kwargs:
        return node.kwargs["dim"]
    return node.args[1] if len(node.args) > 1 else None


def forward_plan(module: nn.Module, ndim: int = 3) -> ForwardPlan:
    """Trace ``module`` and check its forward is "RNN then head ops" (module docstring).

    Parameters
    ----------
    module : torch.nn.Module
        A container.
    ndim : int
        Rank of the RNN's output (a softmax must be over its last axis).

    Returns
    -------
    ForwardPlan

    Raises
    ------
    UnsupportedModuleError
        Naming the first op of the forward that does not fit.
    """
    kind = type(module).__name__
    graph = _trace(module)
    mods = dict(module.named_modules())
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if not placeholders:
        raise UnsupportedModuleError(f"the forward of {kind} takes no input")
    x, states = placeholders[0], set(placeholders[1:])
    rnn_node: fx.Node | None = None
    rnn_path = ""
    finals: set[fx.Node] = set()  # the RNN's output tuple and parts of its final state
    current: fx.Node | None = None  # the sequence the next head op must read
    head: list[tuple[str | None, nn.Module | str]] = []

    def refuse(node: fx.Node, what: str) -> UnsupportedModuleError:
        return UnsupportedModuleError(
            f"the forward of {kind} {what} ({_describe(node)}, node '{node.name}'); only "
            "'RNN(x[, state]) then head layers' is supported (nn.Linear, ReLU/Tanh/Sigmoid, "
            "Identity/Dropout, relu/tanh/sigmoid, softmax/log_softmax over the last axis)"
        )

    for node in graph.nodes:
        if node.op in ("placeholder", "get_attr"):  # a get_attr is refused where it is used
            continue
        if node.op == "output":
            _check_output(node, current, finals, rnn_node, kind)
            break
        args = list(node.args) + list(node.kwargs.values())
        if node.op == "call_module":
            sub = mods[node.target]
            if isinstance(sub, nn.RNNBase | nn.RNNCellBase | KaldiGRU):
                if rnn_node is not None:
                    raise UnsupportedModuleError(
                        f"'{node.target}': only one recurrent module is supported "
                        f"(the forward of {kind} also calls '{rnn_path}')"
                    )
                if not isinstance(sub, _RNNS):
                    raise UnsupportedModuleError(
                        f"'{node.target}' is {type(sub).__name__}; only GRU, LSTM and KaldiGRU "
                        "are supported inside a container (GRUCell / LSTMCell on their own)"
                    )
                if not node.args or node.args[0] is not x:
                    raise refuse(node, "feeds the recurrent module with something else than x")
                for a in args[1:]:
                    if a is not None and a not in states:
                        raise refuse(node, "passes a computed initial state to the RNN")
                rnn_node, rnn_path = node, str(node.target)
                finals.add(node)
                continue
            if rnn_node is None:
                rnns = [p for p, m in mods.items() if isinstance(m, _RNNS)]
                hint = (
                    f"; to compile the recurrent part only: compile_model(model, submodule="
                    f"{rnns[0]!r})"
                    if rnns
                    else ""
                )
                raise UnsupportedModuleError(
                    f"the first child module that the forward of {kind} calls must be nn.GRU, "
                    f"nn.LSTM or KaldiGRU; '{node.target}' is {type(sub).__name__}{hint}"
                )
            if current is None or node.args[:1] != (current,) or len(args) != 1:
                raise refuse(node, "applies a head layer to something else than the sequence")
            head.append((str(node.target), sub))
            current = node
            continue
        if node.op == "call_function" and node.target is operator.getitem:
            src, index = node.args
            if src is rnn_node and index == 0 and current is None:
                current = node
                continue
            if src in finals and src is not current and (src is not rnn_node or index == 1):
                finals.add(node)
                continue
            raise refuse(node, "indexes a value in a way the importer does not follow")
        fn = None
        if node.op == "call_function":
            fn = _FUNCTIONS.get(node.target)
        elif node.op == "call_method":
            fn = _METHODS.get(str(node.target))
        if fn is None or current is None or not node.args or node.args[0] is not current:
            if rnn_node is None:
                raise refuse(node, "computes something before the recurrent module")
            raise refuse(node, "applies an op that is not a head layer")
        if fn in _SOFTMAXES:
            dim = _softmax_dim(node)
            if dim not in (-1, ndim - 1):
                raise refuse(node, f"applies {fn} over axis {dim} instead of the last axis")
            extra = {k: v for k, v in node.kwargs.items() if k not in ("dim", "_stacklevel")}
            if any(v is not None for v in extra.values()) or len(node.args) > 2:
                raise refuse(node, f"passes extra arguments to {fn}")
        elif len(args) != 1:
            raise refuse(node, f"passes extra arguments to {fn}")
        head.append((None, fn))
        current = node
    if rnn_node is None:
        raise UnsupportedModuleError(
            f"the forward of {kind} calls no nn.GRU, nn.LSTM or KaldiGRU module"
        )
    return ForwardPlan(rnn_path, head)


def _check_output(node, current, finals, rnn_node, kind: str) -> None:
    if rnn_node is None:
        return
    out = node.args[0]
    if out is rnn_node and current is None:  # returns the RNN's (y, h_n) as it is
        return
    items = list(out) if isinstance(out, tuple | list) else [out]
    if not items or items[0] is not current or current is None:
        raise UnsupportedModuleError(
            f"the forward of {kind} must return the head's output (optionally with the final "
            f"state); it returns {out!r}"
        )

    def is_state(v) -> bool:
        if isinstance(v, tuple | list):
            return all(is_state(w) for w in v)
        return v in finals and v is not rnn_node

    if len(items) > 2 or (len(items) == 2 and not is_state(items[1])):
        raise UnsupportedModuleError(
            f"the forward of {kind} returns {out!r}; expected y or (y, final state of the RNN)"
        )
