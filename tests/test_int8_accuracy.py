"""scripts/int8_accuracy.py: the simulated int8 GRU against the numpy int8 BSPC reference, and
its PER run on a few utterances of a shipped model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_speech_train import needs_synth

from tvm_bsp.bspc import int8_error_bound, int8_matmat, int8_matvec, quantize_activations
from tvm_bsp.speech.pretrained import load_pretrained
from tvm_bsp.speech.train import evaluate_per

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location(
        "int8_accuracy", ROOT / "scripts/int8_accuracy.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


acc = _script()


@pytest.fixture(scope="module")
def shipped():
    model, masks, info = load_pretrained(acc.shipped_folder() / "bsp-10.safetensors")
    quantized = acc.quantize_matrices(acc.gru_matrices(model, masks, info), "auto")
    return model.eval(), quantized


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


@pytest.mark.parametrize("layer", [0, 1])
def test_one_simulated_step_equals_the_numpy_int8_reference(shipped, layer):
    model, quantized = shipped
    sim = acc.SimulatedGRU(model, quantized, activations=True)
    q_ih, q_hh = quantized[f"rnn.weight_ih_l{layer}"], quantized[f"rnn.weight_hh_l{layer}"]
    rng = np.random.default_rng(layer)
    x = (rng.standard_normal(q_ih.shape[1]) * 3).astype(np.float32)
    if layer == 1:
        x = np.tanh(x)  # the layer below's output
    h = np.tanh(rng.standard_normal(q_hh.shape[1]) * 2).astype(np.float32)
    # the activations the simulation feeds the products are exactly the reference's s * q
    for fake, v, kind in ((acc.fake_quant_input, x, "input"), (acc.fake_quant_state, h, "state")):
        q, s = quantize_activations(v, kind)
        np.testing.assert_array_equal(fake(torch.from_numpy(v)).numpy(), q * s[0])
    b_ih = model.rnn.state_dict()[f"bias_ih_l{layer}"].numpy()
    b_hh = model.rnn.state_dict()[f"bias_hh_l{layer}"].numpy()
    gi = sim.input_projection(layer, torch.from_numpy(x)[None])[0].numpy()
    gh = sim.recurrent_projection(layer, torch.from_numpy(h)[None])[0].numpy()
    ref_gi = int8_matvec(q_ih, x, "input") + b_ih
    ref_gh = int8_matvec(q_hh, h, "state") + b_hh
    for got, ref, q, v, kind, b in (
        (gi, ref_gi, q_ih, x, "input", b_ih),
        (gh, ref_gh, q_hh, h, "state", b_hh),
    ):
        # same quantized operands: only float32 rounding differs (sum of K terms, 3 scalings)
        vq, vs = quantize_activations(v, kind)
        magnitude = np.abs(q.to_dense().astype(np.float64)) @ np.abs(vq * vs[0].astype(float))
        k = q.row_work()
        tol = (k + q.col_blocks + 4) * 2**-23 * magnitude + np.abs(b) * 2**-23 + 1e-12
        assert (np.abs(got.astype(np.float64) - ref) <= tol).all()
    # the gate math on the reference products: torch's GRU update
    r_i, z_i, n_i = np.split(ref_gi, 3)
    r_h, z_h, n_h = np.split(ref_gh, 3)
    r, z = _sigmoid(r_i + r_h), _sigmoid(z_i + z_h)
    ref_h = (1 - z) * np.tanh(n_i + r * n_h) + z * h
    step = sim.cell(torch.from_numpy(gi), torch.from_numpy(gh), torch.from_numpy(h)).numpy()
    np.testing.assert_allclose(step, ref_h, atol=1e-5)


def test_shipped_matrices_stay_within_the_documented_product_bound(shipped):
    model, quantized = shipped
    masks = load_pretrained(acc.shipped_folder() / "bsp-10.safetensors")[1]
    rng = np.random.default_rng(5)
    for name, q in quantized.items():
        kind = "input" if name == "rnn.weight_ih_l0" else "state"  # features / h-like values
        x = rng.standard_normal((q.shape[1], 4)).astype(np.float32)
        x = x * 3 if kind == "input" else np.tanh(x)
        w = model.state_dict()[name].numpy()
        fp32 = w @ x  # the unquantized product (zeros outside the mask)
        assert not w[~masks[name].numpy()].any()
        y = int8_matmat(q, x, kind)
        assert (np.abs(y - fp32) <= int8_error_bound(q, x, kind)).all()
        assert np.linalg.norm(y - fp32) <= 0.02 * np.linalg.norm(fp32)


def test_the_unquantized_loop_is_torchs_gru(shipped):
    model, _ = shipped
    x = torch.randn(25, 3, 39, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_allclose(acc.SimulatedGRU(model)(x), model(x), atol=2e-5)


def test_rejects_other_cells(shipped):
    from tvm_bsp.speech.model import AcousticModel, ModelConfig

    with pytest.raises(ValueError, match="only torch GRU models"):
        acc.SimulatedGRU(AcousticModel(ModelConfig(cell="lstm", hidden=8)))


@needs_synth
def test_the_script_on_a_few_utterances(tmp_path, capsys):
    out = tmp_path / "int8.json"
    argv = ["--utterances", "4", "--rates", "80", "--json", str(out), "--corpus", str(tmp_path)]
    assert acc.main(argv) == 0
    assert "| bsp-80 | 80 |" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["utterances"] == 4 and result["seed"] == 0 and result["phones"] > 4
    assert [r["model"] for r in result["models"]] == ["dense", "bsp-80"]
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["int8.json"]
    utts = acc.test_utterances(4, 0, tmp_path)
    for r in result["models"]:
        model, _, info = load_pretrained(acc.shipped_folder() / f"{r['model']}.safetensors")
        # independent: torch's model on the same utterances
        assert r["fp32_per"] == pytest.approx(evaluate_per(model, utts, **info["decode"]))
        assert r["fp32_loop_per"] == pytest.approx(r["fp32_per"], abs=1.0)
        assert abs(r["difference"]) <= 8.0  # loose: 4 utterances, about 150 phones
        assert r["difference"] == pytest.approx(r["int8_per"] - r["fp32_per"])
        assert r["int8_bspc_bytes"] < r["fp32_bspc_bytes"]
