"""Schedules of the ADMM penalty weight ``rho`` for :class:`tvm_bsp.prune.admm.BSPPruner`.

A schedule is any ``callable(rho, step) -> new rho``, called after every ADMM step with the
1-based step count; :class:`RhoSchedule` is the geometric one (ADMM-NN grows ``rho`` by a
constant factor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RhoSchedule"]


@dataclass(frozen=True)
class RhoSchedule:
    """Multiply ``rho`` by ``factor`` every ``every`` ADMM steps, capped at ``max_rho``.

    Parameters
    ----------
    factor : float
        Growth factor, ``>= 1`` (1 keeps ``rho`` constant).
    max_rho : float
        Upper bound on ``rho``.
    every : int
        Grow after every ``every``-th ADMM step.
    """

    factor: float = 1.0
    max_rho: float = math.inf
    every: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.factor) and self.factor >= 1):
            raise ValueError(f"factor must be a finite number >= 1, got {self.factor}")
        if not self.max_rho > 0:
            raise ValueError(f"max_rho must be positive, got {self.max_rho}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be a positive integer, got {self.every!r}")

    def __call__(self, rho: float, step: int) -> float:
        """``rho`` to use after ADMM step number ``step`` (1-based) given the current one.

        Parameters
        ----------
        rho : float
            The current penalty weight.
        step : int
            The ADMM step just taken, 1-based.

        Returns
        -------
        float
            ``min(rho * factor, max_rho)`` every ``every``-th step, else ``rho``.
        """
        if step % self.every == 0:
            return min(rho * self.factor, self.max_rho)
        return rho
