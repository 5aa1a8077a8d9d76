from __future__ import annotations

import numpy as np
import pytest

from pathxai.model.evaluate import binary_metrics, metrics_from_predictions


def test_binary_metrics_by_hand() -> None:
    y = [0, 0, 0, 1, 1]
    p = [0.1, 0.6, 0.2, 0.8, 0.4]
    m = binary_metrics(y, p)
    # pairs (pos, neg): 0.8 beats all 3, 0.4 beats 0.1 and 0.2 -> 5/6
    assert m["auc"] == pytest.approx(5 / 6)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["confusion_matrix"]["rows_true_cols_pred"] == [[2, 1], [1, 1]]
    assert m["n"] == 5 and m["n_tumour"] == 2
    one = binary_metrics([1, 1], [0.2, 0.9])
    assert one["auc"] is None and one["accuracy"] == 0.5


def test_image_level_is_mean_patch_probability() -> None:
    probs = np.array([0.9, 0.7, 0.2, 0.4, 0.1, 0.3])
    patch_images = np.array([0, 0, 1, 1, 2, 2])
    out = metrics_from_predictions(probs, patch_images, [1, 0, 0], ["a", "b", "c"], ["p1", "p1", "p2"])
    assert [r["prob"] for r in out["images"]] == pytest.approx([0.8, 0.3, 0.2])
    assert out["image_level"]["auc"] == 1.0
    assert out["image_level"]["n"] == 3
    pats = {r["patient"]: r for r in out["per_patient"]}
    assert pats["p1"]["n_images"] == 2 and pats["p1"]["n_patches"] == 4
    assert pats["p2"]["image_accuracy"] == 1.0
    assert out["n"] == 6
