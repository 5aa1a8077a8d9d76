"""Region AUC: tile labels from a truth map, and the AUC on planted scores (perfect, inverted, random)."""

from __future__ import annotations

import numpy as np
import pytest

from pathxai.heatmap.regions import EXCLUDED, TileRule, describe, region_auc, tile_truth

RULE = TileRule(tumour_codes=(3,), normal_codes=(1,), min_fraction=0.5)


def _map() -> np.ndarray:
    """40 x 40: left half normal (1), right half lesion (3) except its top rows (2), a glass border (0)."""
    truth = np.zeros((40, 40), dtype=np.uint8)
    truth[4:36, 4:20] = 1
    truth[4:36, 20:36] = 3
    truth[4:10, 20:36] = 2
    return truth


def test_tile_truth_labels_tumour_normal_and_excluded_tiles() -> None:
    coords = np.array(
        [
            [6, 14],  # inside the normal half
            [24, 20],  # inside the lesion
            [24, 0],  # mostly glass and non-lesion adenocarcinoma
            [15, 14],  # half normal, half lesion: lesion >= 50 %
            [13, 14],  # 7 normal columns, 3 lesion columns: mixed, excluded
            [-20, -20],  # outside the map
            [0, 0],  # mostly glass
        ]
    )
    labels = tile_truth(_map(), coords, 10, RULE)
    assert labels.tolist() == [0, 1, EXCLUDED, 1, EXCLUDED, EXCLUDED, EXCLUDED]


def test_tile_truth_fraction_threshold_and_fractional_size() -> None:
    truth = np.zeros((20, 20), dtype=np.uint8)
    truth[:, :6] = 3  # lesion in the first 6 columns
    coords = np.array([[0, 0]])
    assert tile_truth(truth, coords, 10, TileRule(min_fraction=0.5)).tolist() == [1]
    assert tile_truth(truth, coords, 10, TileRule(min_fraction=0.7)).tolist() == [EXCLUDED]
    # a 12.4 px tile rounds to 12 px: 6/12 lesion columns
    assert tile_truth(truth, coords, 12.4, TileRule(min_fraction=0.5)).tolist() == [1]
    assert tile_truth(truth, coords, 12.6, TileRule(min_fraction=0.5)).tolist() == [EXCLUDED]


def test_rule_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="min_fraction"):
        TileRule(min_fraction=0.0)
    with pytest.raises(ValueError, match="both"):
        TileRule(tumour_codes=(1,), normal_codes=(1, 2))
    with pytest.raises(ValueError, match="2-D"):
        tile_truth(np.zeros((4, 4, 3)), np.zeros((1, 2)), 2, RULE)


def _labels(n: int = 200, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.int8)
    labels[rng.choice(n, 20, replace=False)] = EXCLUDED
    return labels


def test_perfect_scores_give_auc_one() -> None:
    labels = _labels()
    scores = np.where(labels == 1, 0.9, 0.1) + np.random.default_rng(2).uniform(0, 0.05, labels.size)
    res = region_auc(labels, scores, n_boot=200)
    assert res.auc == 1.0 and res.low == 1.0 and res.high == 1.0
    assert res.n_tumour + res.n_non_tumour == 180 and res.n_excluded == 20


def test_inverted_scores_give_auc_zero() -> None:
    labels = _labels()
    scores = np.where(labels == 1, 0.1, 0.9)
    assert region_auc(labels, scores, n_boot=200).auc == 0.0


def test_random_scores_give_auc_near_one_half_with_an_interval_around_it() -> None:
    labels = _labels(2000)
    scores = np.random.default_rng(3).uniform(size=labels.size)
    res = region_auc(labels, scores, n_boot=200)
    assert 0.45 < res.auc < 0.55
    assert res.low < 0.5 < res.high and res.low < res.auc < res.high


def test_auc_counts_ties_as_half_and_leaves_out_nan_scores() -> None:
    labels = np.array([1, 0, 1, 0, 1])
    scores = np.array([0.5, 0.5, 0.8, np.nan, 0.2])
    res = region_auc(labels, scores, n_boot=0)
    # pairs (tumour, normal): (0.5, 0.5) tie = 1/2, (0.8, 0.5) = 1, (0.2, 0.5) = 0
    assert res.auc == pytest.approx(0.5) and res.n_non_tumour == 1 and res.n_excluded == 1
    assert np.isnan(res.low)


def test_one_class_only_is_nan_not_an_error() -> None:
    res = region_auc(np.array([1, 1, EXCLUDED]), np.array([0.2, 0.3, 0.4]))
    assert np.isnan(res.auc) and res.n_tumour == 2 and res.n_non_tumour == 0


def test_length_mismatch_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="differ"):
        region_auc(np.array([0, 1]), np.array([0.1]))


def test_describe_names_both_scores() -> None:
    labels = _labels()
    p = region_auc(labels, np.where(labels == 1, 0.9, 0.1), n_boot=10).to_dict()
    line = describe({"probability": p, "relevance": p})
    assert line.startswith("region AUC 1.000") and "relevance 1.000" in line and "tumour tiles" in line
