"""The two-centre training recipe: stain-matrix jitter, scale jitter, site-by-class sampling, per-site metrics."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from pathxai.model.augment import Augmenter, hed_jitter, perturbed_stain_matrix
from pathxai.model.datasets import PatchDataset
from pathxai.model.evaluate import metrics_from_predictions
from pathxai.model.train import TrainConfig, _epoch_order


def _images(n: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (130, 200, 3), dtype=np.uint8) for _ in range(n)]


def test_stain_matrix_off_is_the_plain_hed_jitter_and_on_changes_hues() -> None:
    img = _images(1)[0][:32, :32]
    plain = hed_jitter(img, np.random.default_rng(3), 0.1, 0.05)
    assert np.array_equal(hed_jitter(img, np.random.default_rng(3), 0.1, 0.05, matrix_sigma=0.0), plain)
    moved = hed_jitter(img, np.random.default_rng(3), 0.1, 0.05, matrix_sigma=0.05)
    assert moved.shape == img.shape and moved.dtype == np.uint8
    assert not np.array_equal(moved, plain)
    assert np.array_equal(moved, hed_jitter(img, np.random.default_rng(3), 0.1, 0.05, matrix_sigma=0.05))


def test_perturbed_stain_matrix_rows_are_unit_non_negative_and_near_skimage() -> None:
    m = perturbed_stain_matrix(np.random.default_rng(0), 0.05)
    assert np.allclose(np.linalg.norm(m, axis=1), 1.0)
    assert (m > 0).all()
    assert np.abs(m - perturbed_stain_matrix(np.random.default_rng(0), 0.0)).max() < 0.3


def test_augmenter_card_entry_names_the_stain_matrix_only_when_on() -> None:
    assert "stain_matrix_sigma" not in Augmenter().to_dict()
    assert Augmenter(stain_matrix_sigma=0.05).to_dict()["stain_matrix_sigma"] == 0.05


def test_scale_jitter_off_leaves_patches_as_before_and_on_rescales_them() -> None:
    imgs = _images()
    plain = PatchDataset(imgs, [0, 1], size=64, stride=64, augment=Augmenter(), seed=5)
    same = PatchDataset(imgs, [0, 1], size=64, stride=64, augment=Augmenter(), seed=5, scale_jitter=0.0)
    jit = PatchDataset(imgs, [0, 1], size=64, stride=64, augment=None, seed=5, scale_jitter=0.15)
    assert np.array_equal(plain[7][0].numpy(), same[7][0].numpy())
    x, y = jit[7]
    assert x.shape == (3, 64, 64) and y == 1
    assert np.array_equal(x.numpy(), jit[7][0].numpy())  # seeded
    raw = PatchDataset(imgs, [0, 1], size=64, stride=64)[7][0]
    assert not np.array_equal(x.numpy(), raw.numpy())
    with pytest.raises(ValueError, match="scale_jitter"):
        PatchDataset(imgs, [0, 1], size=64, stride=64, scale_jitter=1.5)


def test_site_class_sampling_draws_each_stratum_equally() -> None:
    imgs = _images(4)
    # site A: 3 tumour images, site B: 1 normal image -> 18 vs 6 patches, 2 strata
    ds = PatchDataset(imgs, [1, 1, 1, 0], size=64, stride=64, sites=["A", "A", "A", "B"])
    order = _epoch_order(ds, TrainConfig(balance_sites=True), torch.Generator().manual_seed(0))
    counts = Counter(ds.patch_strata[i] for i in order)
    assert len(order) == len(ds)
    assert set(counts) == {("A", 1), ("B", 0)}
    assert abs(counts[("A", 1)] - counts[("B", 0)]) <= 6
    plain = _epoch_order(ds, TrainConfig(), torch.Generator().manual_seed(0))
    assert sorted(plain) == list(range(len(ds)))


def test_per_site_metrics_split_patches_and_images_by_site() -> None:
    probs = np.array([0.9, 0.7, 0.2, 0.4, 0.1, 0.6])
    out = metrics_from_predictions(
        probs,
        np.array([0, 0, 1, 1, 2, 2]),
        [1, 0, 1],
        ["a", "b", "c"],
        ["p1", "p2", "p3"],
        threshold=0.5,
        sites=["s1", "s1", "s2"],
    )
    s1, s2 = out["per_site"]["s1"], out["per_site"]["s2"]
    assert s1["patch"]["n"] == 4 and s2["patch"]["n"] == 2
    assert s1["image"]["sensitivity"] == 1.0 and s1["image"]["specificity"] == 1.0
    assert s2["image"]["n"] == 1 and s2["image"]["sensitivity"] == 0.0
    assert [r["site"] for r in out["images"]] == ["s1", "s1", "s2"]
    single = metrics_from_predictions(
        probs, np.array([0, 0, 1, 1, 2, 2]), [1, 0, 1], "abc", "xyz", sites="sss"
    )
    assert "per_site" not in single
