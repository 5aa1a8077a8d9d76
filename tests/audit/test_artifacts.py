import numpy as np
import pytest
from scipy import ndimage as ndi

from pathxai.audit import artifacts
from tests.audit.conftest import MPP
from tests.audit.plant import darken_fold, draw_pen


def _by(findings, check):
    return next(f for f in findings if f.check == check)


@pytest.mark.real_data
def test_detectors_find_planted_ink_and_folds(glas_subset):
    _, imgs = glas_subset
    rng = np.random.default_rng(1)
    for colour, kind in (("blue", "pen:blue"), ("green", "pen:green"), ("black", "pen:black")):
        img, mask = draw_pen(imgs[2], rng, colour)
        det = artifacts.detect(img, MPP)
        hit = det[kind]
        assert (hit & mask).sum() / mask.sum() > 0.8, kind
        assert (hit & ~ndi.binary_dilation(mask, iterations=4)).mean() < 0.01, kind
    img, band = darken_fold(imgs[5], 40, 70)
    det = artifacts.detect(img, MPP)
    assert (det["fold"] & band).sum() / band.sum() > 0.3
    assert not (det["fold"] & ~ndi.binary_dilation(band, iterations=4)).any()


@pytest.mark.real_data
def test_detectors_find_blur(glas_subset):
    from skimage.filters import gaussian

    _, imgs = glas_subset
    img = imgs[7].copy()
    blurred = (gaussian(img[:, :100], sigma=3, channel_axis=2) * 255).astype(np.uint8)
    img[:, :100] = blurred
    det = artifacts.detect(img, MPP)
    assert det["blur"][:, :90].mean() > 0.3
    assert det["blur"][:, 120:].mean() < 0.05


@pytest.mark.real_data
def test_clean_glas_has_no_pen_or_blur(glas_subset):
    _, imgs = glas_subset
    for img in imgs:
        det = artifacts.detect(img, MPP)
        for k in ("pen:blue", "pen:green", "pen:red", "pen:black", "blur"):
            assert det[k].mean() < 0.005, k


@pytest.mark.real_data
def test_pen_on_tumour_images_fires_association_and_relevance(pen_cohort):
    items = pen_cohort["items"]
    fs = artifacts.check(items)
    assoc = _by(fs, "artifact.label_association:pen:blue")
    assert assoc.severity == "high" and assoc.family == "class-correlated"
    assert assoc.details["prevalence_tumour"] >= 0.75 and assoc.details["prevalence_non_tumour"] == 0
    rel = _by(fs, "artifact.relevance:pen:blue")
    # the model trained on the biased images learned the pen: relevance concentrates on ink
    assert rel.severity in ("medium", "high"), rel.message
    assert rel.value >= 2.0
    assert rel.regions and all(r.l0_w > 0 and r.l0_h > 0 for r in rel.regions)
    # regions are in level-0 (native GlaS) pixels: inside the 775 x 522 image
    assert all(r.l0_x + r.l0_w <= 800 and r.l0_y + r.l0_h <= 540 for r in rel.regions)


@pytest.mark.real_data
def test_relevance_ratio_is_low_for_a_model_that_ignores_the_pen(glas_subset, pen_cohort, clean_model):
    from tests.audit.conftest import make_items, with_heat

    recs, _ = glas_subset
    # a model trained on the clean images, looking at the pen-marked ones
    net, card = clean_model
    items = with_heat(make_items(recs, pen_cohort["images"]), net, card)
    rel = _by(artifacts.check(items), "artifact.relevance:pen:blue")
    biased = _by(artifacts.check(pen_cohort["items"]), "artifact.relevance:pen:blue")
    assert rel.value < biased.value / 2
    assert rel.severity != "high"
