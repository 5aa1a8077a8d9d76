import dataclasses

import numpy as np
import pytest

from pathxai.audit import labels
from pathxai.audit.cohort import Heat
from pathxai.audit.pixels import background_mask


def _by(findings, check):
    return next(f for f in findings if f.check == check)


@pytest.mark.real_data
def test_shortcut_model_makes_pen_marked_benign_images_label_error_candidates(pen_cohort, glas_subset):
    """Benign images with the pen look 'tumour' to the shortcut model: they surface as candidates."""
    from tests.audit.conftest import make_items, with_heat
    from tests.audit.plant import draw_pen

    recs, imgs = glas_subset
    rng = np.random.default_rng(5)
    benign = [i for i, r in enumerate(recs) if r.tumour == 0][:6]
    marked = [draw_pen(im, rng)[0] if i in benign else im for i, im in enumerate(imgs)]
    items = with_heat(make_items(recs, marked), pen_cohort["net"], pen_cohort["card"])
    f = _by(labels.check(items), "labels.candidates")
    flagged = set(f.items)
    assert len(flagged & {recs[i].id for i in benign}) >= 4, f.message
    # few unmarked benign images are flagged (unmarked tumour images may be: the model wants ink)
    unmarked_benign = {r.id for i, r in enumerate(recs) if r.tumour == 0 and i not in benign}
    assert len(flagged & unmarked_benign) <= 2
    assert f.severity in ("low", "medium")  # candidates are capped at medium


@pytest.mark.real_data
def test_relevance_on_background_is_flagged_and_masks_are_measured(glas_subset):
    from tests.audit.conftest import make_items

    recs, imgs = glas_subset
    items = make_items(recs, imgs)
    out = []
    for k, it in enumerate(items):
        bg = background_mask(it.image)
        tissue_rel = (~bg).astype(np.float32)
        # tumour images 0..5: all relevance on glass; the rest: on tissue
        rel = bg.astype(np.float32) if (it.tumour == 1 and k < 6 and bg.mean() > 0.01) else tissue_rel
        mask = np.zeros(bg.shape, bool)
        mask[: bg.shape[0] // 2] = True
        out.append(dataclasses.replace(it, heat=Heat(rel, float(it.tumour or 0)), mask=mask))
    fs = labels.check(out, mask_kind="gland outlines (not tumour)")
    bgf = _by(fs, "labels.background_relevance")
    n_bad = sum(
        1
        for k, it in enumerate(items)
        if it.tumour == 1 and k < 6 and background_mask(it.image).mean() > 0.01
    )
    assert n_bad >= 2
    assert len(bgf.items) == n_bad
    assert bgf.severity in ("medium", "high")
    ann = _by(fs, "labels.annotation")
    assert ann.severity == "info" and "gland outlines" in ann.metric
    assert 0.5 < ann.value < 1.5
    cand = _by(fs, "labels.candidates")
    assert cand.value == 0.0  # probabilities equal the labels
