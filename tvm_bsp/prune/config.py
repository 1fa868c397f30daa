"""Pruning specs: which constraint set each weight is projected onto, and how names map to specs.

A *spec* describes one weight's constraint set and knows its Euclidean projection, the matching
function of :mod:`tvm_bsp.prune.projections`:

==================  ===========================================================================
spec                projection
==================  ===========================================================================
:class:`BSPSpec`    :func:`~tvm_bsp.prune.projections.bsp_mask` (``row_rate`` given) or
                    :func:`~tvm_bsp.prune.projections.bsp_mask_at_rate` (overall ``rate`` given)
:class:`BalancedSpec`  :func:`~tvm_bsp.prune.projections.balanced_mask` (ESE)
:class:`MagnitudeSpec` :func:`~tvm_bsp.prune.projections.magnitude_mask`
==================  ===========================================================================

A *config* maps parameter names of a model to specs. Keys are either exact names as
``model.named_parameters()`` spells them (``"gru.weight_ih_l0"``) or :mod:`fnmatch` glob patterns
(``"gru.weight_*"``, ``"*.weight_hh_l?"``). Resolution (:func:`resolve_config`):

* an exact key wins over any pattern;
* otherwise the first pattern (in the config's order) that matches the name wins;
* a pattern selects only 2-D parameters (biases are skipped), an exact key must name a 2-D
  parameter, and every key must select at least one parameter (a typo is an error).

GRU and LSTM gates
------------------
``torch.nn.GRU`` stores its three gates stacked in one matrix (``weight_ih_l0`` is ``3H x I``,
``weight_hh_l0`` is ``3H x H``; LSTM stacks four, ``4H x ...``). The default, and the only mode,
is to prune the stacked matrix as one matrix, on one block grid: that is what RTMobile's
``3072 x 1024`` matrices are, and what the BSPC kernels consume. Choose ``row_blocks`` so that
the stripes align with the gates if you want no block to straddle two gates (for ``3H`` rows,
any ``row_blocks`` that is a multiple of 3 and divides ``3H``).

Specs serialise to plain JSON dictionaries (:func:`spec_to_dict`, :func:`spec_from_dict`) with a
``"kind"`` key, so configs can live in JSON files and checkpoints.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from tvm_bsp.bspc.grid import stripe_bounds
from tvm_bsp.prune.projections import (
    PAPER_SPLITS,
    balanced_mask,
    bsp_mask,
    bsp_mask_at_rate,
    magnitude_mask,
)


def _check_rate(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"{name} must be a finite number >= 1, got {value}")
    return float(value)


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class BSPSpec:
    """Block-based structured pruning on a ``row_blocks x col_blocks`` grid (RTMobile).

    Give either the step-2 ``row_rate`` (the mask is
    :func:`~tvm_bsp.prune.projections.bsp_mask`; overall compression about
    ``col_rate * row_rate``) or a target overall ``rate`` (the mask is
    :func:`~tvm_bsp.prune.projections.bsp_mask_at_rate`, which finds the row rate that reaches
    it). Giving neither means ``row_rate = 1`` (column-block pruning only).

    Parameters
    ----------
    row_blocks, col_blocks : int
        The block grid (horizontal x vertical stripes); must fit the weight.
    col_rate : float
        Step-1 column-block rate, ``>= 1``.
    row_rate : float, optional
        Step-2 row rate, ``>= 1``. Exclusive with ``rate``.
    rate : float, optional
        Target overall compression, ``>= col_rate``. Exclusive with ``row_rate``.
    """

    row_blocks: int
    col_blocks: int
    col_rate: float
    row_rate: float | None = None
    rate: float | None = None

    kind: ClassVar[str] = "bsp"

    def __post_init__(self) -> None:
        object.__setattr__(self, "row_blocks", _check_count(self.row_blocks, "row_blocks"))
        object.__setattr__(self, "col_blocks", _check_count(self.col_blocks, "col_blocks"))
        object.__setattr__(self, "col_rate", _check_rate(self.col_rate, "col_rate"))
        if self.row_rate is not None and self.rate is not None:
            raise ValueError("give BSPSpec either row_rate or an overall rate, not both")
        if self.rate is not None:
            rate = _check_rate(self.rate, "rate")
            if rate < self.col_rate:
                raise ValueError(f"rate {rate} is below the column rate {self.col_rate}")
            object.__setattr__(self, "rate", rate)
        else:
            row_rate = 1.0 if self.row_rate is None else _check_rate(self.row_rate, "row_rate")
            object.__setattr__(self, "row_rate", row_rate)

    @classmethod
    def paper(cls, rate: int, row_blocks: int, col_blocks: int) -> BSPSpec:
        """The column/row split RTMobile's Table I used for an overall ``rate`` (e.g. 19, 80)."""
        if rate not in PAPER_SPLITS:
            known = sorted(PAPER_SPLITS)
            raise ValueError(f"RTMobile has no split for rate {rate}; known: {known}")
        col_rate, row_rate = PAPER_SPLITS[rate]
        return cls(row_blocks, col_blocks, col_rate, row_rate=row_rate)

    @property
    def grid(self) -> tuple[int, int]:
        """``(row_blocks, col_blocks)``."""
        return self.row_blocks, self.col_blocks

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless the grid fits a 2-D weight of ``shape``."""
        _check_2d(shape)
        stripe_bounds(shape[0], self.row_blocks)
        stripe_bounds(shape[1], self.col_blocks)

    def mask(self, w):
        """Projection mask of ``w`` (numpy or torch, same kind out)."""
        if self.rate is not None:
            return bsp_mask_at_rate(w, self.row_blocks, self.col_blocks, self.rate, self.col_rate)
        return bsp_mask(w, self.row_blocks, self.col_blocks, self.col_rate, self.row_rate)


@dataclass(frozen=True)
class BalancedSpec:
    """ESE's load-balance-aware pruning: ``groups`` row groups, each keeping equal counts.

    Parameters
    ----------
    groups : int
        Number of row groups (processing elements), at most the number of rows.
    rate : float
        Pruning rate, ``>= 1``.
    """

    groups: int
    rate: float

    kind: ClassVar[str] = "balanced"

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", _check_count(self.groups, "groups"))
        object.__setattr__(self, "rate", _check_rate(self.rate, "rate"))

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless the weight has at least ``groups`` rows."""
        _check_2d(shape)
        if self.groups > shape[0]:
            raise ValueError(f"groups={self.groups} exceeds the {shape[0]} rows of the weight")

    def mask(self, w):
        """Projection mask of ``w`` (numpy or torch, same kind out)."""
        return balanced_mask(w, self.groups, self.rate)


@dataclass(frozen=True)
class MagnitudeSpec:
    """Unstructured magnitude pruning at ``rate`` (keep the ``1/rate`` largest ``|w|``)."""

    rate: float

    kind: ClassVar[str] = "magnitude"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", _check_rate(self.rate, "rate"))

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless the weight is 2-D."""
        _check_2d(shape)

    def mask(self, w):
        """Projection mask of ``w`` (numpy or torch, same kind out)."""
        return magnitude_mask(w, self.rate)


Spec = BSPSpec | BalancedSpec | MagnitudeSpec
#: ``"kind"`` tag -> spec class.
SPEC_KINDS: dict[str, type] = {cls.kind: cls for cls in (BSPSpec, BalancedSpec, MagnitudeSpec)}

#: What a config may hold: ``{name or glob pattern: spec or its JSON dictionary}``.
PruneConfig = Mapping[str, "Spec | Mapping[str, Any]"]


def _check_2d(shape: tuple[int, ...]) -> None:
    if len(shape) != 2:
        raise ValueError(f"only 2-D weights can be pruned, got shape {tuple(shape)}")


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """JSON-ready dictionary of a spec, with its ``"kind"``."""
    if not isinstance(spec, BSPSpec | BalancedSpec | MagnitudeSpec):
        raise TypeError(f"not a pruning spec: {spec!r}")
    return {"kind": spec.kind, **asdict(spec)}


def spec_from_dict(data: Spec | Mapping[str, Any]) -> Spec:
    """Build a spec from its dictionary (a spec passes through unchanged).

    Raises
    ------
    ValueError
        For an unknown ``"kind"``, unknown or missing fields, or invalid values.
    """
    if isinstance(data, BSPSpec | BalancedSpec | MagnitudeSpec):
        return data
    if not isinstance(data, Mapping):
        raise ValueError(f"a spec must be a BSPSpec/BalancedSpec/MagnitudeSpec or a dict: {data!r}")
    fields = dict(data)
    kind = fields.pop("kind", None)
    if kind not in SPEC_KINDS:
        raise ValueError(f"unknown spec kind {kind!r}; known: {sorted(SPEC_KINDS)}")
    try:
        return SPEC_KINDS[kind](**fields)
    except TypeError as err:
        raise ValueError(f"bad fields for a {kind!r} spec: {err}") from None


def config_to_json(config: Mapping[str, Spec]) -> str:
    """Serialise ``{name: spec}`` as a JSON object string (key order kept)."""
    return json.dumps({k: spec_to_dict(spec_from_dict(v)) for k, v in config.items()})


def config_from_json(text: str) -> dict[str, Spec]:
    """Inverse of :func:`config_to_json`."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a pruning config must be a JSON object")
    return {str(k): spec_from_dict(v) for k, v in data.items()}


def _is_pattern(key: str) -> bool:
    return any(c in key for c in "*?[")


def resolve_config(
    shapes: Mapping[str, tuple[int, ...]], config: PruneConfig | Iterable[tuple[str, Any]]
) -> dict[str, Spec]:
    """Resolve a config against the parameters of a model.

    Parameters
    ----------
    shapes : mapping
        ``{parameter name: shape}`` of the candidate parameters, in model order.
    config : mapping
        ``{name or glob pattern: spec or spec dictionary}`` (see the module docstring).

    Returns
    -------
    dict
        ``{parameter name: spec}`` in model order, every spec checked against its shape.

    Raises
    ------
    ValueError
        If the config is empty, a key selects nothing, an exact key names a non-2-D parameter,
        or a spec does not fit its weight (e.g. more stripes than rows).
    """
    items = list(config.items()) if isinstance(config, Mapping) else list(config)
    if not items:
        raise ValueError("the pruning config is empty")
    specs = [(str(k), spec_from_dict(v)) for k, v in items]
    exact = {k: s for k, s in specs if not _is_pattern(k)}
    patterns = [(k, s) for k, s in specs if _is_pattern(k)]
    for key in exact:
        if key not in shapes:
            raise ValueError(
                f"config names {key!r}, which is not a parameter of the model; "
                f"prunable parameters: {_listing(shapes)}"
            )
        if len(shapes[key]) != 2:
            raise ValueError(f"{key!r} has shape {tuple(shapes[key])}; only 2-D weights prune")
    resolved: dict[str, Spec] = {}
    used: set[str] = set(exact)
    for name, shape in shapes.items():
        if name in exact:
            resolved[name] = exact[name]
            continue
        if len(shape) != 2:
            continue
        for key, spec in patterns:
            if fnmatch.fnmatchcase(name, key):
                resolved[name] = spec
                used.add(key)
                break
    unused = [k for k, _ in patterns if k not in used]
    if unused:
        raise ValueError(
            f"config pattern(s) {unused} select no 2-D parameter (or only ones an earlier key "
            f"already took); prunable parameters: {_listing(shapes)}"
        )
    for name, spec in resolved.items():
        try:
            spec.check_shape(tuple(shapes[name]))
        except ValueError as err:
            raise ValueError(f"{name} {tuple(shapes[name])}: {err}") from None
    return resolved


def _listing(shapes: Mapping[str, tuple[int, ...]]) -> str:
    names = [n for n, s in shapes.items() if len(s) == 2]
    return ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") if names else "(none)"
