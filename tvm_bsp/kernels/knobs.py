"""Schedule knobs: named choices with a default, and configs that pick one value per knob.

A template lists its knobs; a *config* is a ``dict`` from knob name to value. A tuner samples
``knob.choices`` (MetaSchedule: ``sch.sample_categorical`` over the indices of the choices, one
decision per knob) and calls the template's ``build(config)``; :func:`resolve_config` fills in
defaults and rejects unknown names or values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any


@dataclass(frozen=True)
class Knob:
    """One tunable choice of a schedule template.

    Attributes
    ----------
    name : str
        Key in a config dict.
    choices : tuple
        The values a tuner may pick.
    default : Any
        The value used when a config leaves the knob out; one of ``choices``.
    doc : str
        What the knob changes in the generated kernel.
    """

    name: str
    choices: tuple[Any, ...]
    default: Any
    doc: str = ""

    def __post_init__(self) -> None:
        if self.default not in self.choices:
            raise ValueError(f"knob {self.name}: default {self.default!r} not in {self.choices}")


def resolve_config(knobs: Sequence[Knob], config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a full config: ``config``'s values, defaults for the knobs it leaves out.

    Raises
    ------
    ValueError
        If ``config`` names an unknown knob or gives a value outside the knob's choices.
    """
    by_name = {k.name: k for k in knobs}
    config = dict(config or {})
    unknown = sorted(set(config) - set(by_name))
    if unknown:
        raise ValueError(f"unknown knobs {unknown}; this template has {sorted(by_name)}")
    out = {}
    for knob in knobs:
        value = config.get(knob.name, knob.default)
        if value not in knob.choices:
            raise ValueError(f"knob {knob.name}={value!r} is not one of {knob.choices}")
        out[knob.name] = value
    return out


def all_configs(knobs: Sequence[Knob]) -> Iterator[dict[str, Any]]:
    """Every combination of the knobs' choices (the full search space)."""
    names = [k.name for k in knobs]
    for values in product(*(k.choices for k in knobs)):
        yield dict(zip(names, values, strict=True))
