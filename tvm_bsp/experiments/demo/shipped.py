"""The demo's default models: the dense and BSP models shipped with the package.

The package ships the dense model and the BSP rows of the default Table I run
(:mod:`tvm_bsp.experiments.table1.ship`).
The demo scores them on the first utterances of that run's test
split, generated alone (the corpus plans are per utterance, so they equal the run's), and
compiles the BSP row from its masks and the block grids it was pruned with. Nothing is trained;
``tvm-bsp demo --from-scratch`` trains its own small models instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Log = Callable[[str], Any]


@dataclass
class ShippedDemo:
    """What the demo needs of the shipped models.

    Attributes
    ----------
    dense, pruned : AcousticModel
    dense_path, pruned_path : pathlib.Path
        The shipped files.
    bspc_dir : pathlib.Path
        The pruned model's BSPC export (made from its masks in the work folder).
    achieved : float
        Compression of the pruned model's GRU matrices.
    decode : dict
        The decoding the Table I run chose (``smooth``, ``min_run``).
    test : list
        Test utterances.
    """

    dense: Any
    pruned: Any
    dense_path: Path
    pruned_path: Path
    bspc_dir: Path
    achieved: float
    decode: dict[str, int]
    test: list


def shipped_available(rate: float) -> str | None:
    """``None`` when the dense model and the BSP row of ``rate`` are shipped, else why not."""
    from tvm_bsp.experiments.table1.ship import shipped_dir

    root = shipped_dir()
    for name in ("dense.safetensors", f"bsp-{rate:g}.safetensors"):
        if not (root / name).is_file():
            return f"no shipped model {root / name}"
    return None


def shipped_models(
    work: Path, rate: float, n_test: int, progress: bool, log: Log
) -> ShippedDemo:
    """Load the shipped models, their test utterances and the BSPC export of the BSP row."""
    from tvm_bsp.experiments.table1.ship import shipped_dir, verify_shipped
    from tvm_bsp.prune import export_bspc
    from tvm_bsp.speech.corpus import generate_corpus, load_split
    from tvm_bsp.speech.pretrained import load_pretrained

    root = shipped_dir()
    verify_shipped(root)
    dense_path, pruned_path = root / "dense.safetensors", root / f"bsp-{rate:g}.safetensors"
    dense, _, dense_info = load_pretrained(dense_path)
    pruned, masks, info = load_pretrained(pruned_path)
    row = info["row"]
    log(
        f"shipped models: {dense_path} (dense {dense.config.layers}x{dense.config.hidden} GRU) "
        f"and {pruned_path} (BSP {row['achieved_rate']:.1f}x)"
    )
    seed = int(dense_info["settings"]["corpus_seed"])
    corpus = work / f"corpus-test{n_test}-s{seed}"
    log(f"corpus {corpus} ({n_test} test utterances of the Table I run's test split)")
    generate_corpus(corpus, 0, 0, n_test, seed=seed, progress=progress)
    bspc_dir = work / f"shipped-bsp{rate:g}" / "bspc"
    if not (bspc_dir / "index.json").exists():
        grids = {n: (s["row_blocks"], s["col_blocks"]) for n, s in row["specs"].items()}
        export_bspc(pruned, masks, bspc_dir, grid=grids)
    return ShippedDemo(
        dense=dense,
        pruned=pruned,
        dense_path=dense_path,
        pruned_path=pruned_path,
        bspc_dir=bspc_dir,
        achieved=float(row["achieved_rate"]),
        decode=dict(dense_info["decode"]),
        test=load_split(corpus, "test"),
    )
