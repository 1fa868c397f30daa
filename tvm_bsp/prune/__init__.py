"""BSP pruning: projections onto the structured sets (and, later, the ADMM pruner)."""

from tvm_bsp.prune.projections import (
    PAPER_SPLITS,
    achieved_rate,
    balanced_mask,
    bsp_mask,
    bsp_mask_at_rate,
    column_block_mask,
    magnitude_mask,
    row_mask,
)

__all__ = [
    "PAPER_SPLITS",
    "achieved_rate",
    "balanced_mask",
    "bsp_mask",
    "bsp_mask_at_rate",
    "column_block_mask",
    "magnitude_mask",
    "row_mask",
]
