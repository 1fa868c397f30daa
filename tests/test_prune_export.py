"""Exporting pruned torch weights as BSPC files with a JSON index."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from tvm_bsp.bspc import load_bspc
from tvm_bsp.prune import (
    BalancedSpec,
    BSPPruner,
    BSPSpec,
    MagnitudeSpec,
    NotBSPError,
    export_bspc,
    load_bspc_dir,
    magnitude_mask,
)
from tvm_bsp.prune.export import INDEX_NAME

SPECS = {
    "gru.weight_ih_l0": BSPSpec(6, 2, col_rate=2, row_rate=2),
    "gru.weight_hh_l0": BSPSpec(3, 4, col_rate=2, rate=5),
}


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 12)
        self.head = nn.Linear(12, 5)


def pruned(squash: bool):
    torch.manual_seed(0)
    model = Model()
    pruner = BSPPruner(SPECS)
    pruner.prepare(model)
    pruner.hard_prune()
    with torch.no_grad():  # retraining would change kept values; the export must follow
        model.gru.parametrizations.weight_ih_l0.original.mul_(1.5)
    if squash:
        pruner.squash_mask()
    return model, pruner


def weight(model, name):
    path, _, attr = name.rpartition(".")
    return getattr(model.get_submodule(path), attr).detach().numpy()


@pytest.mark.parametrize("squash", [False, True], ids=["masked", "squashed"])
def test_export_writes_bspc_files_equal_to_the_masked_weights(tmp_path, squash):
    model, pruner = pruned(squash)
    paths = export_bspc(model, pruner, tmp_path / "out")
    assert list(paths) == list(SPECS)
    masks = pruner.masks()
    for name, path in paths.items():
        assert path.parent == tmp_path / "out" and path.name == f"{name}.npz"
        matrix = load_bspc(path)
        w = weight(model, name)
        assert (w[~masks[name].numpy()] == 0).all()
        np.testing.assert_array_equal(matrix.to_dense(), w)
        assert matrix.values.dtype == np.float32
        assert (matrix.row_blocks, matrix.col_blocks) == SPECS[name].grid
        x = np.random.default_rng(0).standard_normal(w.shape[1]).astype(np.float32)
        np.testing.assert_allclose(matrix.matvec(x), w @ x, rtol=1e-5, atol=1e-6)
    index = json.loads((tmp_path / "out" / INDEX_NAME).read_text())
    assert index["format"] == "tvm_bsp.bspc-index" and index["version"] == 1
    entry = index["tensors"]["gru.weight_ih_l0"]
    assert entry["file"] == "gru.weight_ih_l0.npz"
    assert entry["shape"] == [36, 8] and entry["grid"] == [6, 2]
    assert entry["spec"] == {
        "kind": "bsp",
        "row_blocks": 6,
        "col_blocks": 2,
        "col_rate": 2.0,
        "row_rate": 2.0,
        "rate": None,
    }
    kept = int(masks["gru.weight_ih_l0"].sum())
    assert entry["kept"] == kept and entry["compression"] == pytest.approx(36 * 8 / kept)
    assert entry["nnz"] == kept  # BSP masks are whole rectangles: nothing extra stored
    total = index["total"]
    assert total["size"] == 36 * 8 + 36 * 12
    assert total["kept"] == sum(int(m.sum()) for m in masks.values())
    assert index["tensors"]["gru.weight_hh_l0"]["compression"] == pytest.approx(5, rel=0.1)
    matrices, index2 = load_bspc_dir(tmp_path / "out")
    assert index2 == index
    for name, matrix in matrices.items():
        np.testing.assert_array_equal(matrix.to_dense(), weight(model, name))
    leftovers = [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # atomic writes leave no temporary files


def test_export_overwrites_a_previous_export(tmp_path):
    model, pruner = pruned(True)
    export_bspc(model, pruner, tmp_path)
    with torch.no_grad():
        model.gru.weight_ih_l0.mul_(2)
    export_bspc(model, pruner, tmp_path)
    matrices, _ = load_bspc_dir(tmp_path)
    np.testing.assert_array_equal(
        matrices["gru.weight_ih_l0"].to_dense(), weight(model, "gru.weight_ih_l0")
    )


def test_raw_masks_with_a_grid_export_and_non_bsp_masks_are_refused(tmp_path):
    model, pruner = pruned(True)
    masks = pruner.masks()
    paths = export_bspc(model, masks, tmp_path / "raw", grid={n: s.grid for n, s in SPECS.items()})
    assert set(paths) == set(SPECS)
    with pytest.raises(ValueError, match="grid"):
        export_bspc(model, masks, tmp_path / "nogrid")
    # an unstructured mask of a weight that is zero outside it is still not BSP
    w = model.gru.weight_hh_l0
    mask = magnitude_mask(w.detach(), 3)
    with torch.no_grad():
        w.masked_fill_(~mask, 0)
    with pytest.raises(NotBSPError, match=r"gru.weight_hh_l0 .* not BSP-structured: block"):
        export_bspc(model, {"gru.weight_hh_l0": mask}, tmp_path / "bad", grid=(3, 4))
    assert not (tmp_path / "bad").exists()  # validated before anything is written
    # non-zeros outside a mask would be dropped silently: refused unless strict=False
    dense_mask = torch.zeros_like(mask)
    dense_mask[:12, :6] = True
    with pytest.raises(ValueError, match="non-zeros outside"):
        export_bspc(model, {"gru.weight_hh_l0": dense_mask}, tmp_path / "drop", grid=(1, 1))
    paths = export_bspc(
        model, {"gru.weight_hh_l0": dense_mask}, tmp_path / "drop", grid=(1, 1), strict=False
    )
    got = load_bspc(paths["gru.weight_hh_l0"]).to_dense()
    np.testing.assert_array_equal(got, w.detach().numpy() * dense_mask.numpy())


@pytest.mark.parametrize("spec", [BalancedSpec(4, 4), MagnitudeSpec(4)])
def test_pruners_with_non_bsp_specs_are_refused(tmp_path, spec):
    model = Model()
    pruner = BSPPruner({"gru.weight_ih_l0": spec})
    pruner.prepare(model)
    with pytest.raises(ValueError, match="hard_prune"):
        export_bspc(model, pruner, tmp_path)
    pruner.hard_prune()
    message = f"gru.weight_ih_l0 was pruned with {type(spec).__name__}"
    with pytest.raises(NotBSPError, match=message):
        export_bspc(model, pruner, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_load_bspc_dir_refuses_an_index_pointing_outside_its_directory(tmp_path):
    model, pruner = pruned(True)
    export_bspc(model, pruner, tmp_path / "out")
    index_path = tmp_path / "out" / INDEX_NAME
    index = json.loads(index_path.read_text())
    index["tensors"]["gru.weight_ih_l0"]["file"] = "../gru.weight_ih_l0.npz"
    index_path.write_text(json.dumps(index))
    with pytest.raises(ValueError, match="outside the directory"):
        load_bspc_dir(tmp_path / "out")
