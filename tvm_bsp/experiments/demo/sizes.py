"""The size table of ``tvm-bsp demo`` (``--sizes-only``): BSPC vs CSR/BSR/dense bytes.

It prunes the reference GRU's weight matrices (RTMobile: 2 GRU layers of 1024, input
39; torch's default initialisation, seeded) with BSP at the paper's rates, converts them to
BSPC, and compares storage with scipy CSR/BSR and dense. The int8 BSPC column is the same
matrix with int8 values and float32 scales (:func:`tvm_bsp.bspc.quantize_bspc`, granularity
``"auto"``): 1 byte per value, 4 per scale, the same index arrays.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tvm_bsp.bspc import (
    BSPCMatrix,
    atomic_write,
    load_balance,
    quantize_bspc,
    scipy_bsr_nbytes,
    scipy_csr_nbytes,
)
from tvm_bsp.prune import PAPER_SPLITS, bsp_mask_at_rate

#: The reference GRU's distinct matrix shapes and the default block grid for each.
REFERENCE_MATRICES: dict[str, tuple[int, int]] = {
    "weight_ih_l0 3072x39": (96, 4),
    "weight_hh_l0 3072x1024": (96, 16),
}


@dataclass(frozen=True)
class SizeRow:
    """One line of the size table."""

    matrix: str
    rate: int
    col_rate: float
    grid: str
    achieved_rate: float
    bspc_bytes: int
    int8_bspc_bytes: int
    int8_granularity: str
    csr_bytes: int
    bsr_bytes: int
    dense_bytes: int
    imbalance_2t: float
    imbalance_2t_before: float


def reference_gru_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Weights of the reference GRU (2 x 1024, input 39) with torch's default init."""
    import torch

    torch.manual_seed(seed)
    gru = torch.nn.GRU(39, 1024, num_layers=2)
    return {name: p.detach().numpy() for name, p in gru.named_parameters() if "weight" in name}


def size_table(rates: list[int], seed: int = 0) -> list[SizeRow]:
    """Prune the reference matrices at ``rates`` and measure storage of each format.

    Parameters
    ----------
    rates : list of int
        Overall compression rates; each must be a key of :data:`PAPER_SPLITS`.
    seed : int
        Seed of the random weights.

    Returns
    -------
    list of SizeRow
    """
    weights = reference_gru_weights(seed)
    rows = []
    for label, (row_blocks, col_blocks) in REFERENCE_MATRICES.items():
        w = weights[label.split()[0]]
        for rate in rates:
            col_rate = PAPER_SPLITS[rate][0]
            mask = bsp_mask_at_rate(w, row_blocks, col_blocks, rate, col_rate)
            bspc = BSPCMatrix.from_dense(w, mask, row_blocks, col_blocks)
            masked = np.where(mask, w, 0)
            balance = load_balance(bspc, 2)
            int8 = quantize_bspc(bspc)
            rows.append(
                SizeRow(
                    matrix=label.split()[1],
                    rate=rate,
                    col_rate=col_rate,
                    grid=f"{row_blocks}x{col_blocks}",
                    achieved_rate=round(bspc.compression, 2),
                    bspc_bytes=bspc.nbytes,
                    int8_bspc_bytes=int8.nbytes,
                    int8_granularity=int8.granularity,
                    csr_bytes=scipy_csr_nbytes(masked),
                    bsr_bytes=scipy_bsr_nbytes(masked),
                    dense_bytes=w.nbytes,
                    imbalance_2t=round(balance.after, 3),
                    imbalance_2t_before=round(balance.before, 3),
                )
            )
    return rows


def format_size_table(rows: list[SizeRow]) -> str:
    """Render the size table as Markdown."""
    head = (
        "| matrix | rate | col rate | grid | achieved | BSPC KiB | int8 BSPC KiB | CSR KiB "
        "| BSR(8x1) KiB | dense KiB | dense/BSPC | BSPC/int8 | CSR/BSPC "
        "| max/mean work, 2 threads (before -> after) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r.matrix} | {r.rate} | {r.col_rate:g} | {r.grid} | {r.achieved_rate:.1f} "
            f"| {r.bspc_bytes / 1024:.1f} | {r.int8_bspc_bytes / 1024:.1f} "
            f"| {r.csr_bytes / 1024:.1f} | {r.bsr_bytes / 1024:.1f} "
            f"| {r.dense_bytes / 1024:.0f} | {r.dense_bytes / r.bspc_bytes:.1f} "
            f"| {r.bspc_bytes / r.int8_bspc_bytes:.2f} "
            f"| {r.csr_bytes / r.bspc_bytes:.2f} | {r.imbalance_2t_before:.3f} -> "
            f"{r.imbalance_2t:.3f} |"
        )
    return "\n".join(lines)


def run_demo(rates: list[int], seed: int, json_path: Path | None) -> int:
    """Run the demo: print the table, optionally write JSON records. Returns an exit code."""
    print(
        "tvm-bsp demo: BSP-prune the reference GRU's matrices (2x1024, input 39) at RTMobile's "
        "rates and store them as BSPC",
        file=sys.stderr,
    )
    rows = size_table(rates, seed)
    print(format_size_table(rows))
    if json_path is not None:
        records = [asdict(r) for r in rows]
        atomic_write(json_path, lambda f: f.write(json.dumps(records, indent=1).encode()))
        print(f"wrote {json_path}", file=sys.stderr)
    return 0
