"""Hypothesis strategies for BSP-structured matrices."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def bsp_problems(draw, max_dim: int = 40):
    """Draw ``(weight, row_blocks, col_blocks, col_rate, row_rate)`` with random shapes."""
    M = draw(st.integers(1, max_dim))
    N = draw(st.integers(1, max_dim))
    row_blocks = draw(st.integers(1, M))
    col_blocks = draw(st.integers(1, N))
    col_rate = draw(st.sampled_from([1, 1.5, 2, 3, 4, 8]))
    row_rate = draw(st.sampled_from([1, 1.25, 2, 4]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((M, N)).astype(np.float32)
    weight[weight == 0] = 1.0  # keep every stored value non-zero so CSR comparisons are exact
    return weight, row_blocks, col_blocks, col_rate, row_rate
