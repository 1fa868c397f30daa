"""The ADMM pruner: config resolution, ADMM updates, hard pruning, masked retraining, squash."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tvm_bsp.bspc import BSPCMatrix, stripe_bounds
from tvm_bsp.prune import (
    BalancedSpec,
    BSPPruner,
    BSPSpec,
    MagnitudeSpec,
    RhoSchedule,
    achieved_rate,
    balanced_mask,
    bsp_mask,
    bsp_mask_at_rate,
    magnitude_mask,
)
from tvm_bsp.prune.config import config_from_json, config_to_json, resolve_config, spec_from_dict
from tvm_bsp.prune.masked import original

GRU_SPEC = BSPSpec(row_blocks=6, col_blocks=2, col_rate=2, row_rate=2)


class TinyGRU(nn.Module):
    """Two GRU layers and a linear head, the reference model's shape in miniature."""

    def __init__(self, inp: int = 8, hidden: int = 12, out: int = 5, dropout: float = 0.0):
        super().__init__()
        self.gru = nn.GRU(inp, hidden, num_layers=2, dropout=dropout)
        self.head = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.gru(x)
        return self.head(y)


GRU_WEIGHTS = ["gru.weight_ih_l0", "gru.weight_hh_l0", "gru.weight_ih_l1", "gru.weight_hh_l1"]


def block_rectangles_ok(mask: np.ndarray, row_blocks: int, col_blocks: int) -> bool:
    """Independent BSP check: in every block the kept set is (kept rows) x (kept columns)."""
    rb = stripe_bounds(mask.shape[0], row_blocks)
    cb = stripe_bounds(mask.shape[1], col_blocks)
    for i in range(row_blocks):
        for j in range(col_blocks):
            sub = mask[rb[i] : rb[i + 1], cb[j] : cb[j + 1]]
            if not np.array_equal(sub, np.outer(sub.any(axis=1), sub.any(axis=0))):
                return False
    return True


def _get(model: nn.Module, name: str) -> torch.Tensor:
    """The weight as the model uses it (masked when a mask is registered)."""
    path, _, attr = name.rpartition(".")
    return getattr(model.get_submodule(path) if path else model, attr).detach()


def orig(model: nn.Module, name: str) -> torch.Tensor:
    path, _, attr = name.rpartition(".")
    return original(model.get_submodule(path) if path else model, attr)


# ---------------------------------------------------------------------- config
def test_config_resolves_exact_names_before_globs_and_skips_biases():
    model = TinyGRU()
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    other = BSPSpec(3, 1, col_rate=4)
    specs = resolve_config(shapes, {"gru.weight_*": GRU_SPEC, "gru.weight_hh_l1": other})
    assert list(specs) == GRU_WEIGHTS  # model order, biases and head skipped
    assert specs["gru.weight_hh_l1"] == other
    assert all(specs[n] == GRU_SPEC for n in GRU_WEIGHTS[:3])
    # the stacked GRU matrices are pruned as one: 3H x I and 3H x H
    assert shapes["gru.weight_ih_l0"] == (36, 8) and shapes["gru.weight_hh_l0"] == (36, 12)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"gru.weight_ih_l9": GRU_SPEC}, "not a parameter"),
        ({"gru.bias_ih_l0": GRU_SPEC}, "only 2-D"),
        ({"lstm.*": GRU_SPEC}, "select no 2-D parameter"),
        ({"gru.weight_ih_l0": BSPSpec(37, 1, 2)}, "cannot cut"),
        ({"gru.weight_ih_l0": BalancedSpec(40, 2)}, "exceeds"),
        ({}, "empty"),
    ],
)
def test_bad_configs_are_refused(config, message):
    with pytest.raises(ValueError, match=message):
        BSPPruner(config).prepare(TinyGRU())


def test_specs_validate_and_round_trip_through_json():
    with pytest.raises(ValueError, match="not both"):
        BSPSpec(2, 2, col_rate=2, row_rate=2, rate=4)
    with pytest.raises(ValueError, match="below the column rate"):
        BSPSpec(2, 2, col_rate=4, rate=2)
    with pytest.raises(ValueError, match=">= 1"):
        MagnitudeSpec(0.5)
    with pytest.raises(ValueError, match="unknown spec kind"):
        spec_from_dict({"kind": "circulant"})
    assert BSPSpec(2, 2, col_rate=3).row_rate == 1.0
    assert BSPSpec.paper(80, 4, 4) == BSPSpec(4, 4, col_rate=20, row_rate=8)
    config = {
        "a": BSPSpec(2, 3, col_rate=16, rate=19),
        "b": BalancedSpec(4, 8),
        "c": MagnitudeSpec(10),
        "d": BSPSpec(1, 1, 2, row_rate=1.25),
    }
    assert config_from_json(config_to_json(config)) == config


# ---------------------------------------------------------------------- prepare / ADMM
def test_prepare_keeps_parameters_and_outputs_and_starts_admm_from_the_projection():
    torch.manual_seed(0)
    model = TinyGRU()
    before = {n: p for n, p in model.named_parameters()}
    x = torch.randn(7, 3, 8)
    y0 = model(x)
    pruner = BSPPruner({"gru.weight_*": GRU_SPEC}, rho=0.1)
    pruner.prepare(model)
    assert pruner.phase == "admm" and pruner.names == GRU_WEIGHTS
    for name in GRU_WEIGHTS:
        assert orig(model, name) is before[name]  # an optimizer built before keeps working
    torch.testing.assert_close(model(x), y0, rtol=0, atol=0)
    # Z0 = proj(W0), U0 = 0, so the penalty is rho/2 sum ||W - proj(W)||^2
    expected = 0.0
    for name in GRU_WEIGHTS:
        w = before[name].detach().double().numpy()
        m = bsp_mask(w, 6, 2, 2, 2)
        expected += ((w * ~m) ** 2).sum()
    assert pruner.penalty().item() == pytest.approx(0.05 * expected, rel=1e-5)
    assert all(m.all() for m in pruner.masks().values())


def test_admm_step_matches_a_numpy_reference_with_rho_schedule_and_dual_rescaling():
    torch.manual_seed(1)
    lin = nn.Linear(10, 12, bias=False)
    spec = BSPSpec(3, 2, col_rate=2, row_rate=1.5)
    pruner = BSPPruner(rho=0.5, rho_schedule=RhoSchedule(factor=2.0, max_rho=1.5))
    pruner.prepare(lin, {"weight": spec})
    w = lin.weight.detach().double().numpy().copy()
    z = w * bsp_mask(w, 3, 2, 2, 1.5)
    u = np.zeros_like(w)
    rho = 0.5
    rng = np.random.default_rng(0)
    for k in range(3):
        w = w + 0.3 * rng.standard_normal(w.shape)  # "training" moves W
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
        w = lin.weight.detach().double().numpy()  # float32 rounding, as the pruner sees it
        v = w + u
        z = v * bsp_mask(v.astype(np.float32), 3, 2, 2, 1.5)
        u = v - z
        new_rho = min(rho * 2.0, 1.5)
        u = u * rho / new_rho
        rho = new_rho
        residual = pruner.step()
        state = pruner.state_dict()
        np.testing.assert_allclose(state["z"]["weight"].numpy(), z, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state["u"]["weight"].numpy(), u, rtol=1e-5, atol=1e-6)
        assert pruner.rho == pytest.approx(rho) and pruner.admm_steps == k + 1
        ref = np.linalg.norm(w - z) / np.linalg.norm(w)
        assert residual["weight"] == pytest.approx(ref, rel=1e-5)
    penalty = rho / 2 * ((w - z + u) ** 2).sum()
    assert pruner.penalty().item() == pytest.approx(penalty, rel=1e-5)


def test_rho_schedule_grows_every_k_steps_up_to_the_cap():
    sched = RhoSchedule(factor=10, max_rho=50, every=2)
    rho, seen = 1.0, []
    for step in range(1, 7):
        rho = sched(rho, step)
        seen.append(rho)
    assert seen == [1, 10, 10, 50, 50, 50]
    with pytest.raises(ValueError):
        RhoSchedule(factor=0.5)


def _regression_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(24, 24, generator=g) / 24**0.5 + torch.eye(24)
    x = torch.randn(256, 24, generator=g) @ mix  # correlated inputs
    target = torch.randn(32, 24, generator=g)
    return x, x @ target.T


def _fit(lin, x, y, opt, steps, extra=None):
    for _ in range(steps):
        loss = ((lin(x) - y) ** 2).mean()
        total = loss + extra() if extra is not None else loss
        opt.zero_grad()
        total.backward()
        opt.step()
    return loss.item()


def test_admm_pulls_the_weight_onto_the_bsp_set_and_beats_one_shot_pruning():
    x, y = _regression_problem()
    spec = BSPSpec(4, 4, col_rate=2, row_rate=2)
    torch.manual_seed(0)
    dense = nn.Linear(24, 32, bias=False)
    opt = torch.optim.Adam(dense.parameters(), lr=1e-2)
    _fit(dense, x, y, opt, 300)
    start = {k: v.clone() for k, v in dense.state_dict().items()}

    # ADMM
    pruner = BSPPruner(rho=1e-2, rho_schedule=RhoSchedule(factor=1.5, max_rho=10.0))
    pruner.prepare(dense, {"weight": spec})
    distances = [pruner.distance()["weight"]]
    for _ in range(14):
        _fit(dense, x, y, opt, 40, pruner.penalty)
        pruner.step()
        distances.append(pruner.distance()["weight"])
    assert distances[-1] < 0.01 * distances[0]
    assert distances[-1] < distances[len(distances) // 2] < distances[0]
    pruner.hard_prune()
    admm_loss = _fit(dense, x, y, opt, 150)

    # one-shot projection of the same dense start, same retraining
    oneshot = nn.Linear(24, 32, bias=False)
    oneshot.load_state_dict(start)
    opt2 = torch.optim.Adam(oneshot.parameters(), lr=1e-2)
    p2 = BSPPruner({"weight": spec})
    p2.prepare(oneshot)
    p2.hard_prune()
    oneshot_loss = _fit(oneshot, x, y, opt2, 150)
    zero_loss = (y**2).mean().item()
    assert admm_loss < oneshot_loss < zero_loss


def test_admm_on_a_gru_reduces_the_distance_of_every_stacked_matrix():
    torch.manual_seed(0)
    model = TinyGRU()
    x = torch.randn(6, 16, 8)
    target = torch.randn(6, 16, 5)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    pruner = BSPPruner(rho=1e-2, rho_schedule=RhoSchedule(factor=2.0, max_rho=5.0))
    pruner.prepare(model, {"gru.weight_*": GRU_SPEC})
    d0 = pruner.distance()
    for _ in range(8):
        for _ in range(15):
            loss = ((model(x) - target) ** 2).mean()
            opt.zero_grad()
            (loss + pruner.penalty()).backward()
            opt.step()
        pruner.step()
    d1 = pruner.distance()
    assert all(d1[n] < 0.2 * d0[n] for n in GRU_WEIGHTS), (d0, d1)
    assert loss.item() < 1.5  # target variance is 1: the fit did not blow up


# ---------------------------------------------------------------------- hard prune, structure
@pytest.mark.parametrize(
    "spec",
    [GRU_SPEC, BSPSpec(4, 3, col_rate=2, rate=5), BSPSpec(12, 4, col_rate=4)],
    ids=["rates", "overall-rate", "column-only"],
)
def test_structure_survives_hard_prune_retraining_and_squash(spec):
    torch.manual_seed(0)
    model = TinyGRU()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-2)
    pruner = BSPPruner({"gru.weight_*": spec})
    pruner.prepare(model)
    before = {n: _get(model, n).numpy().copy() for n in GRU_WEIGHTS}
    rates = pruner.hard_prune()
    masks = {n: m.numpy() for n, m in pruner.masks().items()}
    for name in GRU_WEIGHTS:
        w = before[name]
        if spec.rate is None:
            proj = bsp_mask(w, spec.row_blocks, spec.col_blocks, spec.col_rate, spec.row_rate)
        else:
            proj = bsp_mask_at_rate(w, spec.row_blocks, spec.col_blocks, spec.rate, spec.col_rate)
        np.testing.assert_array_equal(masks[name], proj)
        assert rates[name] == achieved_rate(proj)
        if spec.rate is not None:
            assert rates[name] == pytest.approx(spec.rate, rel=0.1)
        elif spec.row_rate == 1:
            keep = max(1, round(w.shape[1] / spec.col_rate))
            assert rates[name] == pytest.approx(w.shape[1] / keep)
    x, target = torch.randn(5, 4, 8), torch.randn(5, 4, 5)
    for _ in range(20):
        loss = ((model(x) - target) ** 2).mean() + pruner.penalty()  # penalty is 0 now
        opt.zero_grad()
        loss.backward()
        opt.step()
    pruner.squash_mask()
    assert pruner.phase == "squashed"
    assert not any("parametrizations" in n for n, _ in model.named_parameters())
    for name in GRU_WEIGHTS:
        w = model.get_parameter(name).detach().numpy()
        np.testing.assert_array_equal(w != 0, masks[name])  # trained survivors, exact zeros
        assert block_rectangles_ok(w != 0, spec.row_blocks, spec.col_blocks)
        matrix = BSPCMatrix.from_dense(w, w != 0, spec.row_blocks, spec.col_blocks)
        np.testing.assert_array_equal(matrix.to_dense(), w)
        assert matrix.compression == pytest.approx(rates[name])


def make_module(kind: str) -> tuple[nn.Module, dict, torch.Tensor]:
    if kind == "gru":
        return nn.GRU(6, 8, num_layers=2), {"weight_*": BSPSpec(4, 2, 2, 2)}, torch.randn(5, 3, 6)
    if kind == "lstm":
        return nn.LSTM(6, 8), {"weight_*": BSPSpec(8, 2, 2, 2)}, torch.randn(5, 3, 6)
    return nn.Linear(6, 8), {"weight": BSPSpec(2, 2, 2, 2)}, torch.randn(4, 6)


def _out(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    y = module(x)
    return y[0] if isinstance(y, tuple) else y


OPTIMIZERS = {
    "adam-l2": lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.1),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1),
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.1),
}


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("kind", ["gru", "lstm", "linear"])
def test_masked_retraining_keeps_pruned_weights_exactly_zero(kind, opt_name):
    torch.manual_seed(0)
    module, config, x = make_module(kind)
    opt = OPTIMIZERS[opt_name](module.parameters())
    pruner = BSPPruner(config)
    pruner.prepare(module)
    # a few ADMM-phase steps first, so the optimizer has momentum on every entry
    for _ in range(3):
        loss = _out(module, x).pow(2).mean() + pruner.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
    pruner.hard_prune()
    masks = pruner.masks()
    for _ in range(5):
        loss = (_out(module, x) - 1).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        for name, m in masks.items():
            assert (orig(module, name).grad[~m] == 0).all()
        opt.step()
        for name, m in masks.items():
            assert (_get(module, name)[~m] == 0).all()
    # the module really computes with the masked weights: even with garbage in the hidden
    # pruned entries, its output equals a plain module holding W * mask
    with torch.no_grad():
        for name, m in masks.items():
            orig(module, name)[~m] = 1e3
    reference, _, _ = make_module(kind)
    reference.load_state_dict({n: _get(module, n).clone() for n, _ in reference.named_parameters()})
    for name, m in masks.items():
        assert (reference.get_parameter(name)[~m] == 0).all()
    torch.testing.assert_close(_out(module, x), _out(reference, x), rtol=0, atol=0)
    pruner.zero_pruned_()
    for name, m in masks.items():
        assert (orig(module, name)[~m] == 0).all()
    pruner.squash_mask()
    torch.testing.assert_close(_out(module, x), _out(reference, x), rtol=0, atol=0)


# ---------------------------------------------------------------------- ESE, magnitude
def test_balanced_and_magnitude_specs_work_through_the_same_pruner():
    torch.manual_seed(0)
    model = TinyGRU()
    config = {
        "gru.weight_ih_*": BalancedSpec(groups=4, rate=4),
        "gru.weight_hh_*": MagnitudeSpec(rate=5),
        "head.weight": BSPSpec(5, 3, col_rate=2),
    }
    pruner = BSPPruner(config, rho=0.05)
    pruner.prepare(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, target = torch.randn(5, 4, 8), torch.randn(5, 4, 5)
    d0 = pruner.distance()
    for _ in range(6):
        for _ in range(10):
            loss = ((model(x) - target) ** 2).mean() + pruner.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
        pruner.step()
    d1 = pruner.distance()
    assert all(d1[n] < d0[n] for n in d0)
    before = {n: _get(model, n).numpy().copy() for n in pruner.names}
    rates = pruner.hard_prune()
    masks = {n: m.numpy() for n, m in pruner.masks().items()}
    for name in ("gru.weight_ih_l0", "gru.weight_ih_l1"):
        np.testing.assert_array_equal(masks[name], balanced_mask(before[name], 4, 4))
        counts = [masks[name][g::4].sum() for g in range(4)]
        assert len(set(counts)) == 1  # every processing element gets the same work
        assert rates[name] == pytest.approx(4, rel=0.05)
    for name in ("gru.weight_hh_l0", "gru.weight_hh_l1"):
        np.testing.assert_array_equal(masks[name], magnitude_mask(before[name], 5))
        assert masks[name].sum() == round(masks[name].size / 5)
    assert block_rectangles_ok(masks["head.weight"], 5, 3)
    loss = ((model(x) - target) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    for name, m in masks.items():
        assert (_get(model, name).numpy()[~m] == 0).all()


# ---------------------------------------------------------------------- lifecycle
def test_lifecycle_errors_are_clear():
    model = nn.Linear(4, 6)
    pruner = BSPPruner({"weight": BSPSpec(2, 2, 2)})
    with pytest.raises(RuntimeError, match="not prepared"):
        pruner.step()
    pruner.prepare(model)
    with pytest.raises(RuntimeError, match="already prepared"):
        pruner.prepare(model)
    with pytest.raises(ValueError, match="already carries pruning masks"):
        BSPPruner({"weight": BSPSpec(2, 2, 2)}).prepare(model)
    with pytest.raises(RuntimeError, match="'retrain' phase"):
        pruner.squash_mask()
    pruner.hard_prune()
    assert pruner.penalty().item() == 0.0
    with pytest.raises(RuntimeError, match="'admm' phase"):
        pruner.step()
    with pytest.raises(RuntimeError, match="'admm' phase"):
        pruner.hard_prune()
    pruner.squash_mask()
    assert pruner.distance()["weight"] == 0.0  # the squashed weight is in the set
    assert pruner.masks()["weight"].sum() < 24
