"""Packed layout of a dense weight for the dense baseline kernels.

``W (M, N)`` is cut into ``ceil(M / P)`` panels of ``P`` consecutive rows (the last one padded
with zero rows) and stored as ``w[(p * N + k) * P + i] = W[p * P + i, k]``: for every column
``k`` a contiguous ``P``-vector, the same column-major-inside-a-panel order as the BSPC panels
(:mod:`tvm_bsp.ops.layout`) with every column kept. ``bias`` is padded the same way.
"""

from __future__ import annotations

import numpy as np


def pack_dense(
    weight: np.ndarray, panel_rows: int, bias: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Pack a dense ``(M, N)`` weight into row panels.

    Parameters
    ----------
    weight : numpy.ndarray
        ``(M, N)`` float weight.
    panel_rows : int
        Rows per panel ``P``.
    bias : numpy.ndarray, optional
        ``(M,)`` bias (zeros if omitted).

    Returns
    -------
    dict
        ``{"w": (ceil(M/P) * N * P,) float32, "bias": (ceil(M/P) * P,) float32}``.
    """
    weight = np.asarray(weight, np.float32)
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D, got shape {weight.shape}")
    M, N = weight.shape
    P = int(panel_rows)
    npanels = -(-M // P)
    padded = np.zeros((npanels * P, N), np.float32)
    padded[:M] = weight
    w = padded.reshape(npanels, P, N).transpose(0, 2, 1)
    lane_bias = np.zeros(npanels * P, np.float32)
    if bias is not None:
        bias = np.asarray(bias, np.float32)
        if bias.shape != (M,):
            raise ValueError(f"bias must have shape ({M},), got {bias.shape}")
        lane_bias[:M] = bias
    return {"w": np.ascontiguousarray(w).ravel(), "bias": lane_bias}
