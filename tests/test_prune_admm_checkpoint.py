"""Pruner state, checkpoints, and the resumable ``admm_prune`` loop."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from tvm_bsp.prune import (
    BSPPruner,
    BSPSpec,
    CheckpointError,
    MagnitudeSpec,
    RhoSchedule,
    admm_prune,
    load_checkpoint,
    save_checkpoint,
)
from tvm_bsp.prune.loop import CHECKPOINT_NAME

CONFIG = {"gru.weight_*": BSPSpec(6, 2, col_rate=2, row_rate=2), "head.weight": MagnitudeSpec(2)}


class TinyGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 12, num_layers=2, dropout=0.2)  # dropout draws from the RNG
        self.head = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(x)[0])


def build(seed: int = 0):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    model = TinyGRU()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    return model, opt, sched


def train_epoch(model, opt, extra_loss_fn, steps: int = 4):
    model.train()
    total = 0.0
    for _ in range(steps):
        x = torch.randn(6, 4, 8)  # batches from the global RNG
        target = x[..., :5].cumsum(0) * 0.1 + 0.01 * float(np.random.standard_normal())
        loss = ((model(x) - target) ** 2).mean()
        opt.zero_grad()
        (loss + extra_loss_fn()).backward()
        opt.step()
        total += loss.item()
    return total / steps


def assert_same_tensors(a, b):
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same_tensors(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tensors(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("phase", ["admm", "retrain", "squashed"])
def test_checkpoint_round_trip_into_fresh_objects_restores_everything(tmp_path, phase):
    model, opt, sched = build(0)
    pruner = BSPPruner(rho=0.01, rho_schedule=RhoSchedule(2.0, 1.0))
    pruner.prepare(model, CONFIG)
    for _ in range(2):
        train_epoch(model, opt, pruner.penalty)
        pruner.step()
        sched.step()
    if phase != "admm":
        pruner.hard_prune()
        train_epoch(model, opt, pruner.penalty)
    if phase == "squashed":
        pruner.squash_mask()
    random.random()
    np.random.standard_normal()
    path = save_checkpoint(
        tmp_path / "ck.pt", model, opt, pruner, 7, {"note": "hi"}, lr_scheduler=sched
    )
    expect_rng = (torch.rand(3), np.random.standard_normal(3), random.random())

    model2, opt2, sched2 = build(123)  # a different init: everything must come from the file
    pruner2 = BSPPruner(rho=0.01, rho_schedule=RhoSchedule(2.0, 1.0))
    info = load_checkpoint(path, model2, opt2, pruner2, lr_scheduler=sched2)
    assert (info.epoch, info.extra, info.pruner_phase) == (7, {"note": "hi"}, phase)
    assert pruner2.phase == phase and pruner2.rho == pruner.rho
    assert pruner2.admm_steps == pruner.admm_steps == 2
    assert pruner2.specs == pruner.specs
    assert_same_tensors(pruner2.state_dict(), pruner.state_dict())
    assert_same_tensors(model2.state_dict(), model.state_dict())
    assert_same_tensors(opt2.state_dict(), opt.state_dict())
    assert sched2.state_dict() == sched.state_dict()
    got_rng = (torch.rand(3), np.random.standard_normal(3), random.random())
    assert torch.equal(got_rng[0], expect_rng[0])
    np.testing.assert_array_equal(got_rng[1], expect_rng[1])
    assert got_rng[2] == expect_rng[2]
    # the restored pair keeps training identically
    x = torch.randn(5, 2, 8)
    model.eval()
    model2.eval()
    torch.testing.assert_close(model2(x), model(x), rtol=0, atol=0)
    if phase == "admm":
        torch.testing.assert_close(pruner2.penalty(), pruner.penalty(), rtol=0, atol=0)


def test_checkpoint_loads_in_a_new_process(tmp_path):
    model, opt, _ = build(0)
    pruner = BSPPruner()
    pruner.prepare(model, CONFIG)
    train_epoch(model, opt, pruner.penalty)
    pruner.step()
    save_checkpoint(tmp_path / "ck.pt", model, opt, pruner, 3)
    torch.save({n: t for n, t in pruner.state_dict()["z"].items()}, tmp_path / "z.pt")
    code = textwrap.dedent(
        f"""
        import torch
        from torch import nn
        from tvm_bsp.prune import BSPPruner, load_checkpoint
        class TinyGRU(nn.Module):
            def __init__(self):
                super().__init__()
                self.gru = nn.GRU(8, 12, num_layers=2, dropout=0.2)
                self.head = nn.Linear(12, 5)
        model = TinyGRU()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
        pruner = BSPPruner()
        info = load_checkpoint({str(tmp_path / "ck.pt")!r}, model, opt, pruner)
        z = torch.load({str(tmp_path / "z.pt")!r}, weights_only=True)
        same = all(torch.equal(pruner.state_dict()["z"][n], t) for n, t in z.items())
        print(info.epoch, pruner.phase, pruner.names == list(z), same)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["3", "admm", "True", "True"]


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_load_refuses_pickled_objects_truncated_files_and_foreign_files(tmp_path):
    model, _, _ = build(0)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "tvm_bsp.prune.checkpoint", "version": 1, "x": _Evil()}, evil)
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(evil, model)
    good = save_checkpoint(tmp_path / "good.pt", model)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        load_checkpoint(cut, model)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match=r"not a tvm_bsp\.prune\.checkpoint"):
        load_checkpoint(other, model)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "bad.pt", model, extra={"t": torch.zeros(1)})
    with pytest.raises(ValueError, match="holds no pruner state"):
        load_checkpoint(good, model, pruner=BSPPruner())
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt", model)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cut.pt",
        "evil.pt",
        "good.pt",
        "other.pt",  # no temporary files left behind
    ]


def test_load_into_a_pruner_with_another_config_is_refused(tmp_path):
    model, opt, _ = build(0)
    pruner = BSPPruner()
    pruner.prepare(model, CONFIG)
    save_checkpoint(tmp_path / "ck.pt", model, opt, pruner, 0)
    model2, opt2, _ = build(0)
    other = BSPPruner({"gru.weight_*": BSPSpec(6, 2, col_rate=4)})
    other.prepare(model2)
    with pytest.raises(ValueError, match="differs"):
        load_checkpoint(tmp_path / "ck.pt", model2, opt2, other)


class InterruptError(Exception):
    pass


def run(ckpt_dir, interrupt_at: int | None = None, epochs=(3, 3)):
    model, opt, sched = build(0)
    seen = []

    def train_fn(model, extra_loss_fn, ctx):
        if ctx.epoch == interrupt_at:
            raise InterruptError
        seen.append((ctx.epoch, ctx.phase, ctx.phase_epoch, ctx.pruner.phase))
        loss = train_epoch(model, opt, extra_loss_fn)
        sched.step()
        return {"loss": loss}

    result = admm_prune(
        model,
        CONFIG,
        train_fn,
        *epochs,
        optimizer=opt,
        lr_scheduler=sched,
        rho=0.01,
        rho_schedule=RhoSchedule(2.0, 1.0),
        checkpoint_dir=ckpt_dir,
        progress=False,
    )
    return model, result, seen


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run, shared by the resume tests."""
    ckpt_dir = tmp_path_factory.mktemp("ref")
    return ckpt_dir, *run(ckpt_dir)


# interrupted: in the ADMM phase, right after hard pruning, in retraining
@pytest.mark.parametrize("interrupt_at", [2, 3, 4])
def test_interrupted_admm_prune_resumes_to_the_same_result(tmp_path, reference_run, interrupt_at):
    ref_dir, ref_model, ref, ref_seen = reference_run
    assert ref_seen == [
        (0, "admm", 0, "admm"),
        (1, "admm", 1, "admm"),
        (2, "admm", 2, "admm"),
        (3, "retrain", 0, "retrain"),
        (4, "retrain", 1, "retrain"),
        (5, "retrain", 2, "retrain"),
    ]
    assert ref.pruner.phase == "squashed" and ref.resumed_from is None
    with pytest.raises(InterruptError):
        run(tmp_path / "cut", interrupt_at)
    model, result, seen = run(tmp_path / "cut")  # fresh objects, same directory
    assert result.resumed_from == interrupt_at
    assert [s[0] for s in seen] == list(range(interrupt_at, 6))
    assert_same_tensors(model.state_dict(), ref_model.state_dict())
    assert json.dumps(result.history) == json.dumps(ref.history)
    assert result.rates == ref.rates
    for name, mask in ref.pruner.masks().items():
        assert torch.equal(result.pruner.masks()[name], mask)
        assert (model.get_parameter(name)[~mask] == 0).all()
    # history: ADMM epochs report distances that shrink, retraining has the masks fixed
    dist = [max(h["distance"].values()) for h in ref.history[:3]]
    assert dist[-1] < dist[0]
    assert [h["phase"] for h in ref.history] == ["admm"] * 3 + ["retrain"] * 3
    # a finished run's directory just returns the result again
    model3, again, seen3 = run(ref_dir)
    assert seen3 == [] and again.resumed_from == 6
    assert_same_tensors(model3.state_dict(), ref_model.state_dict())


def test_resume_with_other_settings_is_refused_and_one_shot_works(tmp_path):
    with pytest.raises(InterruptError):
        run(tmp_path, interrupt_at=1)
    assert (tmp_path / CHECKPOINT_NAME).exists()
    with pytest.raises(ValueError, match="epochs_admm"):
        run(tmp_path, epochs=(2, 3))
    model, _, _ = build(0)
    with pytest.raises(ValueError, match="was made with config"):
        admm_prune(
            model,
            {"gru.weight_*": BSPSpec(6, 2, 4)},
            lambda *a: None,
            3,
            3,
            checkpoint_dir=tmp_path,
            progress=False,
        )
    # epochs_admm == 0: one-shot projection, then masked retraining
    model, result, seen = run(None, epochs=(0, 2))
    assert [s[1:] for s in seen] == [("retrain", 0, "retrain"), ("retrain", 1, "retrain")]
    assert result.pruner.phase == "squashed"
    assert all(r > 1.9 for r in result.rates.values())
