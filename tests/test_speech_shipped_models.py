"""The models shipped in tvm_bsp/pretrained/table1: intact, the PER they claim, BSP structure."""

from __future__ import annotations

import numpy as np
import pytest
from test_speech_train import needs_synth

from tvm_bsp.experiments.table1.ship import TEST_SLICE, shipped_dir, verify_shipped
from tvm_bsp.speech.pretrained import load_pretrained
from tvm_bsp.speech.train import evaluate_per

FILES = sorted(p.name for p in shipped_dir().glob("*.safetensors"))


def test_the_shipped_files_match_their_manifest_and_the_size_budget():
    manifest = verify_shipped()
    assert "dense.safetensors" in manifest and any(n.startswith("bsp-") for n in manifest)
    assert sorted(manifest) == FILES
    assert sum(e["bytes"] for e in manifest.values()) <= 40 * 2**20


@pytest.fixture(scope="module")
def test_slice(tmp_path_factory):
    from tvm_bsp.speech.corpus import generate_corpus, load_split

    info = load_pretrained(shipped_dir() / "dense.safetensors")[2]
    root = tmp_path_factory.mktemp("slice") / "corpus"
    generate_corpus(
        root, 0, 0, TEST_SLICE, seed=int(info["settings"]["corpus_seed"]), progress=False
    )
    return load_split(root, "test")


@needs_synth
@pytest.mark.parametrize("name", FILES)
def test_each_model_scores_its_recorded_per_on_the_test_slice(name, test_slice):
    model, _, info = load_pretrained(shipped_dir() / name)
    recorded = info["test_slice"]
    assert [u.id for u in test_slice] == recorded["utterances"]
    per = evaluate_per(model, test_slice, **info["decode"])
    assert per == pytest.approx(recorded["per"], abs=0.5)
    assert per < 60  # a trained model, far from chance (about 100 % PER)


def _stripes(n: int, k: int) -> list[np.ndarray]:
    """The grid convention of the BSP projections: ``k`` stripes of ``n // k``, the last one
    takes the remainder."""
    size = n // k
    return [np.arange(i * size, n if i == k - 1 else (i + 1) * size) for i in range(k)]


@pytest.mark.parametrize("name", [n for n in FILES if n.startswith("bsp-")])
def test_bsp_rows_keep_whole_block_rows_and_columns_at_their_rate(name):
    _, masks, info = load_pretrained(shipped_dir() / name)
    row = info["row"]
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    assert total / kept == pytest.approx(row["rate"], rel=0.05)
    for weight, mask in masks.items():
        spec = row["specs"][weight]
        m = mask.numpy()
        for r in _stripes(m.shape[0], spec["row_blocks"]):
            for c in _stripes(m.shape[1], spec["col_blocks"]):
                block = m[np.ix_(r, c)]
                # BSP: a block keeps a set of rows x a set of columns, nothing else
                expected = np.outer(block.any(axis=1), block.any(axis=0))
                np.testing.assert_array_equal(block, expected, err_msg=f"{weight} block")
