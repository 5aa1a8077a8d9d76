"""Faithfulness and localisation metrics on problems whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pathxai.explain import explain
from pathxai.explain.metrics import (
    make_baseline,
    random_relevance,
    region_perturbation,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)


class RegionSum(nn.Module):
    """Class-1 logit = sum of the first channel over a fixed square; class 0 = its negative."""

    def __init__(self, y0: int = 4, x0: int = 8, size: int = 8) -> None:
        super().__init__()
        self.window = (slice(y0, y0 + size), slice(x0, x0 + size))
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, 0, self.window[0], self.window[1]].sum((1, 2)) * self.scale
        return torch.stack([-s, s], dim=1)


def known_problem() -> tuple[nn.Module, torch.Tensor, np.ndarray]:
    model = RegionSum()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) + 1.0  # positive evidence
    truth = np.zeros((4, 32, 32), np.float32)
    truth[:, 4:12, 8:16] = 1.0
    return model, x, truth


def test_morf_curve_of_true_relevance_beats_random_and_lerf() -> None:
    model, x, truth = known_problem()
    good = region_perturbation(model, x, truth, 1, patch=4, steps=16, baseline="zero")
    rand = region_perturbation(
        model, x, random_relevance((4, 32, 32), seed=1), 1, patch=4, steps=16, baseline="zero"
    )
    lerf = region_perturbation(model, x, truth, 1, patch=4, steps=16, baseline="zero", order="lerf")
    assert good.fractions[0] == 0 and good.fractions[-1] == 1
    with torch.no_grad():
        clean = model(x)[:, 1].numpy()
    np.testing.assert_allclose(good.scores[:, 0], clean, rtol=1e-6)
    np.testing.assert_allclose(good.scores[:, -1], 0.0, atol=1e-6)  # everything replaced by zeros
    # the 4 relevant 4x4 patches of 64 are gone after the first step (1/16 of patches = 4 patches)
    np.testing.assert_allclose(good.scores[:, 1], 0.0, atol=1e-6)
    assert np.all(good.auc < rand.auc) and np.all(good.auc < lerf.auc)
    assert np.all(np.diff(good.mean_curve) <= 1e-9)


def test_perturbation_is_batch_invariant_and_probability_scores() -> None:
    model, x, truth = known_problem()
    a = region_perturbation(model, x, truth, patch=4, steps=8, baseline="mean")
    b = region_perturbation(model, x, truth, patch=4, steps=8, baseline="mean", batch_size=3)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    p = region_perturbation(model, x, truth, patch=4, steps=8, baseline="mean", score="probability")
    assert np.all((p.scores >= 0) & (p.scores <= 1))


def test_perturbation_on_lrp_of_a_real_cnn(vgg: nn.Module) -> None:
    """End to end on a CNN: LRP relevance plugs into the curve (values checked, no ranking claim)."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    result = explain(vgg, x)
    curve = region_perturbation(vgg, x, result.relevance, result.target, patch=8, steps=4, baseline="blur")
    np.testing.assert_allclose(curve.scores[:, 0], result.logits[:, 1], rtol=1e-4, atol=1e-5)
    assert curve.scores.shape == (2, 5) and np.isfinite(curve.auc).all()


def test_baselines() -> None:
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(make_baseline(x, "mean")[:, :, 3, 5], x.mean((2, 3)))
    assert torch.equal(make_baseline(x, "zero"), torch.zeros_like(x))
    assert torch.equal(make_baseline(x, 0.5), torch.full_like(x, 0.5))
    blurred = make_baseline(x, "blur", blur_sigma=2.0)
    assert blurred.shape == x.shape and blurred.std() < x.std()
    const = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(make_baseline(const, "blur"), const, atol=1e-6)
    with pytest.raises(ValueError, match="baseline"):
        make_baseline(x, "noise")  # type: ignore[arg-type]


def test_bad_arguments() -> None:
    model, x, truth = known_problem()
    with pytest.raises(ValueError, match="shape"):
        region_perturbation(model, x, truth[:, :16], 1)
    with pytest.raises(ValueError, match="order"):
        region_perturbation(model, x, truth, 1, order="best")  # type: ignore[arg-type]


def test_relevance_mass_and_rank_accuracy() -> None:
    mask = np.zeros((2, 4, 4), bool)
    mask[:, :2, :2] = True  # 4 pixels
    rel = np.zeros((2, 4, 4), np.float32)
    rel[0, :2, :2] = 1.0  # all relevance inside
    rel[0, 3, 3] = -5.0  # negative evidence is ignored by default
    rel[1, 0, 0] = 1.0
    rel[1, 3, :] = 1.0  # 1 of 5 units inside; top-4 pixels: ties broken by order -> (0,0) + 3 outside
    np.testing.assert_allclose(relevance_mass_accuracy(rel, mask), [1.0, 0.2])
    assert relevance_mass_accuracy(rel, mask, positive_only=False)[0] == pytest.approx(4 / -1)
    np.testing.assert_allclose(relevance_rank_accuracy(rel, mask), [1.0, 0.25])
    assert np.isnan(relevance_rank_accuracy(rel, np.zeros_like(mask))).all()
    assert np.isnan(relevance_mass_accuracy(np.zeros_like(rel), mask)).all()
    np.testing.assert_allclose(relevance_mass_accuracy(rel[0], mask[0]), [1.0])
    with pytest.raises(ValueError, match="must both"):
        relevance_mass_accuracy(rel, mask[:, :2])
