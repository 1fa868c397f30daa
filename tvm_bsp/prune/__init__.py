"""BSP pruning: projections onto the structured sets and the ADMM pruner for torch modules."""

from tvm_bsp.prune.admm import BSPPruner, RhoSchedule
from tvm_bsp.prune.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tvm_bsp.prune.config import BalancedSpec, BSPSpec, MagnitudeSpec, Spec
from tvm_bsp.prune.export import NotBSPError, export_bspc, load_bspc_dir
from tvm_bsp.prune.loop import EpochContext, PruneResult, admm_prune
from tvm_bsp.prune.masked import WeightMask
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
    "BSPPruner",
    "BSPSpec",
    "BalancedSpec",
    "CheckpointError",
    "EpochContext",
    "MagnitudeSpec",
    "NotBSPError",
    "PruneResult",
    "RhoSchedule",
    "Spec",
    "WeightMask",
    "achieved_rate",
    "admm_prune",
    "balanced_mask",
    "bsp_mask",
    "bsp_mask_at_rate",
    "column_block_mask",
    "export_bspc",
    "load_bspc_dir",
    "load_checkpoint",
    "magnitude_mask",
    "row_mask",
    "save_checkpoint",
]
