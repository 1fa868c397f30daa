"""Knowledge distillation loss (tvm_bsp.speech.train) against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tvm_bsp.speech.model import AcousticModel, ModelConfig
from tvm_bsp.speech.train import (
    IGNORE,
    Batch,
    batch_loss,
    distillation_loss,
    distilled_loss_fn,
)


def _hand_kd(student: np.ndarray, teacher: np.ndarray, valid: np.ndarray, temp: float) -> float:
    """T^2 * mean over valid frames of sum_c p_t log(p_t / p_s), with explicit loops."""
    total, count = 0.0, 0
    for t in range(student.shape[0]):
        for b in range(student.shape[1]):
            if not valid[t, b]:
                continue
            s = student[t, b] / temp
            q = teacher[t, b] / temp
            ps = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
            pt = np.exp(q - q.max()) / np.exp(q - q.max()).sum()
            total += float(sum(pt[c] * math.log(pt[c] / ps[c]) for c in range(len(pt))))
            count += 1
    return temp**2 * total / count


@pytest.mark.parametrize("temp", [1.0, 2.0, 4.5])
def test_distillation_loss_matches_hand_computation(temp):
    rng = np.random.default_rng(1)
    student = rng.normal(size=(5, 3, 7)) * 2
    teacher = rng.normal(size=(5, 3, 7)) * 2
    labels = rng.integers(0, 7, size=(5, 3))
    labels[3:, 1] = IGNORE  # a shorter utterance: padding must not count
    labels[:, 2] = IGNORE  # an unlabelled one: skipped entirely
    got = distillation_loss(
        torch.tensor(student, dtype=torch.float64),
        torch.tensor(teacher, dtype=torch.float64),
        torch.tensor(labels),
        temp,
    )
    assert float(got) == pytest.approx(_hand_kd(student, teacher, labels != IGNORE, temp), 1e-10)


def test_distillation_loss_zero_for_equal_scores_and_gradient_only_to_student():
    s = torch.randn(4, 2, 5, requires_grad=True)
    t = torch.randn(4, 2, 5, requires_grad=True)
    labels = torch.zeros(4, 2, dtype=torch.long)
    same = distillation_loss(s, s.detach().clone(), labels).detach()
    assert float(same) == pytest.approx(0, abs=1e-6)
    distillation_loss(s, t, labels).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
    empty = torch.full((4, 2), IGNORE)
    assert float(distillation_loss(s, t, empty).detach()) == 0.0


def test_distillation_loss_rejects_bad_input():
    s = torch.zeros(2, 1, 3)
    labels = torch.zeros(2, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(s, s, labels, 0.0)
    with pytest.raises(ValueError, match="student"):
        distillation_loss(s, torch.zeros(2, 1, 4), labels)


def _batch() -> Batch:
    torch.manual_seed(0)
    x = torch.randn(6, 2, 39)
    labels = torch.randint(0, 39, (6, 2))
    labels[4:, 1] = IGNORE
    return Batch(x, labels, torch.tensor([6, 4]), [[1, 2], [3]])


def test_distilled_loss_fn_mixes_cross_entropy_and_kd():
    torch.manual_seed(0)
    student = AcousticModel(ModelConfig(hidden=8, layers=1))
    teacher = AcousticModel(ModelConfig(hidden=8, layers=1))
    batch = _batch()
    with torch.no_grad():
        ce = float(batch_loss(student, batch))
        kd = float(distillation_loss(student(batch.x), teacher(batch.x), batch.frame_labels, 3.0))
    for w in (0.0, 0.3, 1.0):
        got = float(distilled_loss_fn(teacher, w, 3.0)(student, batch).detach())
        assert got == pytest.approx((1 - w) * ce + w * kd, rel=1e-5)


def test_distilled_loss_fn_rejects_bad_settings():
    teacher = AcousticModel(ModelConfig(hidden=8, layers=1))
    with pytest.raises(ValueError, match="weight"):
        distilled_loss_fn(teacher, 1.5)
    with pytest.raises(ValueError, match="framewise"):
        distilled_loss_fn(AcousticModel(ModelConfig(hidden=8, layers=1, head="ctc")), 0.5)
