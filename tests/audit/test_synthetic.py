"""Planted-bias audit checks on generated tissue-like images (no ``../shared`` needed).

The same biases as the real-data tests (pen ink on tumour images, re-stained images, a leaked
patient, a class missing at a site, class imbalance), on images of :mod:`tests.audit.synth`; the
real-data versions stay in test_artifacts.py / test_stain.py / test_sampling.py.
"""

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from pathxai.audit import artifacts, sampling, stain
from pathxai.audit.findings import Thresholds
from pathxai.pixels import background_mask
from tests.audit import synth
from tests.audit.plant import draw_pen, shift_stain

FAST = Thresholds.from_mapping({"settings": {"permutations": 60, "bootstrap": 100}})


def _by(findings, check):
    return next(f for f in findings if f.check == check)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [synth.he_image(rng) for _ in range(n)]


def test_generated_images_look_like_tissue_on_glass():
    img = _images(1)[0]
    bg = background_mask(img)
    assert 0.03 < bg.mean() < 0.3  # the glass margin, not the stroma
    h, e = stain.stain_features(img)[0:3], stain.stain_features(img)[3:6]
    assert h[0] > e[0] and np.argmax(e) == 1  # as on real H&E


def test_detectors_find_planted_ink_on_generated_tissue():
    img = _images(1, seed=3)[0]
    rng = np.random.default_rng(1)
    for colour, kind in (("blue", "pen:blue"), ("green", "pen:green"), ("black", "pen:black")):
        marked, mask = draw_pen(img, rng, colour)
        hit = artifacts.detect(marked, synth.MPP)[kind]
        assert (hit & mask).sum() / mask.sum() > 0.8, kind
        assert (hit & ~ndi.binary_dilation(mask, iterations=4)).mean() < 0.01, kind
    clean = artifacts.detect(img, synth.MPP)
    for k in ("pen:blue", "pen:green", "pen:red", "pen:black"):
        assert clean[k].mean() < 0.005, k


def test_pen_on_generated_tumour_images_is_associated_with_the_label():
    imgs = _images(16, seed=5)
    rng = np.random.default_rng(2)
    tumour = [1] * 8 + [0] * 8
    marked = [draw_pen(im, rng)[0] if t else im for im, t in zip(imgs, tumour, strict=True)]
    fs = artifacts.check(synth.items(marked, tumour))
    assoc = _by(fs, "artifact.label_association:pen:blue")
    assert assoc.severity == "high" and assoc.family == "class-correlated"
    assert assoc.details["prevalence_tumour"] == 1.0 and assoc.details["prevalence_non_tumour"] == 0
    control = artifacts.check(synth.items(imgs, tumour))
    assert not [f for f in control if f.check == "artifact.label_association:pen:blue"]


def test_restained_generated_images_are_stain_outliers():
    imgs = _images(20, seed=7)
    odd = {3, 12}
    shifted = [shift_stain(im, (1.6, 0.6, 1.0)) if i in odd else im for i, im in enumerate(imgs)]
    f = _by(stain.check(synth.items(shifted, [i % 2 for i in range(20)]), FAST), "stain.outliers")
    assert {f"syn_{i}" for i in odd} <= set(f.items)
    assert len(f.items) <= 4
    assert f.severity in ("low", "medium", "high")


def _with_meta(items, changes):
    return [dataclasses.replace(it, meta={**it.meta, **changes.get(it.id, {})}) for it in items]


def _split_by_patient(items):
    """Patients p0..p4 in test, the others in train: no patient in two splits."""
    return _with_meta(items, {it.id: {"split": "test"} for it in items if int(it.meta["patient"][1:]) < 5})


def test_patient_in_two_splits_of_generated_items_is_leakage():
    items = _split_by_patient(synth.items(_images(20, seed=9), [i % 2 for i in range(20)]))
    assert _by(sampling.check(items), "sampling.leakage").severity == "info"
    leaked = _with_meta(items, {"syn_10": {"split": "test"}})  # patient p5 (syn_10, syn_11) now in both
    f = _by(sampling.check(leaked), "sampling.leakage")
    assert f.severity == "high"
    assert "p5" in f.details["leaked_patients"]


def test_removed_class_at_a_site_of_generated_items_is_a_missing_cell():
    tumour = [1] * 20 + [0] * 20
    items = synth.items(_images(40, seed=11), tumour)
    moved = _with_meta(items, {f"syn_{i}": {"site": "Other hospital"} for i in range(8)})  # 8 tumour images
    f = _by(sampling.check(moved), "sampling.missing_cells")
    assert f.severity != "info"
    assert {
        "column": "site",
        "value": "Other hospital",
        "missing_class": "non-tumour",
        "n_in_group": 8,
    } in f.details["missing"]
    both = _with_meta(items, {f"syn_{i}": {"site": "Other hospital"} for i in (*range(4), *range(20, 24))})
    assert not _by(sampling.check(both), "sampling.missing_cells").details.get("missing")


def test_generated_cohort_with_four_tumour_per_non_tumour_is_imbalanced():
    items = synth.items(_images(25, seed=13), [1] * 20 + [0] * 5)
    f = _by(sampling.check(items), "sampling.imbalance")
    assert f.value == 4.0 and f.severity == "medium"
    balanced = synth.items(_images(20, seed=13), [1] * 10 + [0] * 10)
    assert _by(sampling.check(balanced), "sampling.imbalance").severity == "info"
