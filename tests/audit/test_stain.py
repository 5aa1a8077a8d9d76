import numpy as np
import pytest

from pathxai.audit import stain
from pathxai.audit.findings import Thresholds
from tests.audit.conftest import make_items
from tests.audit.plant import shift_stain

FAST = Thresholds.from_mapping({"settings": {"permutations": 120, "bootstrap": 300}})


def _by(findings, check):
    return next(f for f in findings if f.check == check)


@pytest.mark.real_data
def test_stain_vectors_of_real_he(glas_subset):
    _, imgs = glas_subset
    f = stain.stain_features(imgs[0])
    h, e = f[0:3], f[3:6]
    assert np.allclose(np.linalg.norm(h), 1) and np.allclose(np.linalg.norm(e), 1)
    # haematoxylin absorbs red light more than eosin does; eosin absorbs green most
    assert h[0] > e[0] and np.argmax(e) == 1
    assert f[6] > 0 and f[8] > 0  # H and E concentrations


@pytest.mark.real_data
def test_stain_shift_of_mostly_tumour_patients_is_caught(glas_subset):
    recs, imgs = glas_subset
    # patients with mostly tumour images come from a "second lab" with another stain
    pats = {}
    for r in recs:
        pats.setdefault(r.group, []).append(r.tumour)
    lab2 = {p for p, ys in pats.items() if np.mean(ys) > 0.5}
    shifted = [
        shift_stain(im, (1.0, 1.5, 0.6)) if r.group in lab2 else im for r, im in zip(recs, imgs, strict=True)
    ]
    frac_tumour = np.mean([r.tumour for r in recs if r.group in lab2])
    assert frac_tumour > 0.8
    clean = stain.check(make_items(recs, imgs), FAST)
    planted = stain.check(make_items(recs, shifted), FAST)
    probe_clean, probe_planted = _by(clean, "stain.probe.label"), _by(planted, "stain.probe.label")
    assert probe_planted.severity == "high", probe_planted.message
    assert probe_planted.details["p_value"] <= 0.05
    assert probe_planted.details["grouped_by_patient"]
    # this 40-image subset is already somewhat colour-confounded (full GlaS: AUC ~0.6, not significant)
    assert probe_clean.severity != "high", probe_clean.message
    assert probe_planted.value > probe_clean.value
    # a "second lab": the stain identifies it, and it holds no non-tumour image
    from pathxai.audit import sampling

    items = make_items(recs, shifted, {r.id: {"site": "lab B"} for r in recs if r.group in lab2})
    site = _by(stain.check(items, FAST), "stain.probe.site")
    assert site.severity == "high" and site.value > 0.9
    missing = _by(sampling.check(items), "sampling.missing_cells")
    n_b = sum(r.group in lab2 for r in recs)
    assert {
        "column": "site",
        "value": "lab B",
        "missing_class": "non-tumour",
        "n_in_group": n_b,
    } in missing.details["missing"]
    # the clean control has no high-severity stain finding
    assert all(f.severity != "high" for f in clean), [(f.check, f.value) for f in clean]


@pytest.mark.real_data
def test_stain_outliers_flag_the_restained_images(glas_subset):
    recs, imgs = glas_subset
    odd = {recs[3].id, recs[25].id}
    shifted = [
        shift_stain(im, (1.6, 0.6, 1.0)) if r.id in odd else im for r, im in zip(recs, imgs, strict=True)
    ]
    f = _by(stain.check(make_items(recs, shifted), FAST), "stain.outliers")
    assert odd <= set(f.items)
    assert len(f.items) <= 5
    assert f.severity in ("low", "medium")
    assert f.regions and f.regions[0].l0_w > 0


@pytest.mark.real_data
def test_sensitivity_uses_the_model(pen_cohort, he_reference):
    from pathxai.audit.heat import image_predictor
    from pathxai.model.datasets import read_rgb

    items = pen_cohort["items"][:6]
    th = Thresholds.from_mapping({"settings": {"sensitivity_images": 6}})
    calls = []
    base = image_predictor(pen_cohort["net"], pen_cohort["card"])

    def predict(imgs):
        calls.append(len(imgs))
        return base(imgs)

    (f,), table = stain.check_sensitivity(items, predict, read_rgb(he_reference), th)
    assert calls == [6, 6, 6, 6]  # baseline, 2 jitters, Macenko
    assert f.check == "stain.sensitivity" and 0.0 <= f.value <= 1.0
    assert len(table["baseline"]) == 6 and "macenko_to_reference" in table


def test_empty_and_bad_input():
    assert stain.check([], Thresholds()) == []
    with pytest.raises(ValueError):
        stain.estimate_stain_vectors(np.zeros((10, 3)))
