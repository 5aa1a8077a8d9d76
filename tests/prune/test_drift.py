"""Explanation drift numbers: identical models do not drift, different heatmaps do."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pathxai.explain.filters import default_filter_composite
from pathxai.prune import explanation_drift, heatmap_similarity, topk_iou


def _lrp_heatmap(model, x, t):
    from zennit.attribution import Gradient

    with Gradient(model=model, composite=default_filter_composite(model)) as attributor:
        _, rel = attributor(x, torch.nn.functional.one_hot(t, 2).float())
    return rel.sum(1).detach().numpy()


def test_topk_iou_counts_overlap() -> None:
    a = np.arange(100.0)
    assert topk_iou(a, a, 0.1) == 1.0
    assert topk_iou(a, -a, 0.1) == 0.0
    b = a.copy()
    b[95:] = -1  # half of the top-10 replaced
    assert topk_iou(a, b, 0.1) == pytest.approx(5 / 15)
    with pytest.raises(ValueError):
        topk_iou(a, a, 0.0)


def test_similarity_of_a_map_with_itself_and_its_negation() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 16))
    same = heatmap_similarity(a, 3 * a + 1)
    assert same["pearson"] == pytest.approx(1.0) and same["spearman"] == pytest.approx(1.0)
    neg = heatmap_similarity(a, -a)
    assert neg["pearson"] == pytest.approx(-1.0) and neg["topk_iou"] == 0.0


def test_identical_models_do_not_drift(small_net, reference) -> None:
    x, y = reference[0]
    report = explanation_drift(small_net, copy.deepcopy(small_net), x, y, _lrp_heatmap, batch_size=3)
    assert report.n == 4
    assert report.pearson == pytest.approx(1.0) and report.topk_iou == pytest.approx(1.0)
    assert report.prediction_agreement == 1.0
    assert report.to_dict()["flip_auc_original"] is None


def test_a_changed_model_drifts(small_net, reference) -> None:
    x, y = reference[0]
    other = copy.deepcopy(small_net)
    with torch.no_grad():
        other[4].weight.mul_(-1.0)
    report = explanation_drift(
        small_net, other, x, y, _lrp_heatmap, flip_auc=lambda m, xx, r, t: np.ones(len(xx))
    )
    assert report.pearson < 0.99
    assert report.flip_auc_original == 1.0
