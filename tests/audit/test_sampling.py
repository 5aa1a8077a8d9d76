import dataclasses

import numpy as np
import pytest

from pathxai.audit import sampling
from pathxai.audit.cohort import Heat
from tests.audit.conftest import make_items


def _by(findings, check):
    return next(f for f in findings if f.check == check)


@pytest.mark.real_data
def test_real_glas_splits_are_clean(glas_subset):
    recs, imgs = glas_subset
    fs = sampling.check(make_items(recs, imgs))
    assert _by(fs, "sampling.leakage").severity == "info"
    assert all(f.severity != "high" for f in fs), [(f.check, f.severity) for f in fs]
    assert "Only one site" in _by(fs, "sampling.missing_cells").message


@pytest.mark.real_data
def test_patient_in_two_splits_is_leakage(glas_subset):
    recs, imgs = glas_subset
    # one image of a training patient moved to test
    pat = next(r.group for r in recs if r.split == "train" and sum(q.group == r.group for q in recs) >= 2)
    moved = next(r.id for r in recs if r.group == pat)
    items = make_items(recs, imgs, {moved: {"split": "test"}})
    f = _by(sampling.check(items), "sampling.leakage")
    assert f.severity == "high"
    assert pat in f.details["leaked_patients"]


@pytest.mark.real_data
def test_grade_missing_from_training_is_unseen(glas_subset):
    recs, imgs = glas_subset
    # every 'poorly differentiated' image goes to test: training never sees the grade
    over = {r.id: {"split": "test"} for r in recs if r.extra.get("grade") == "poorly differentiated"}
    assert len(over) >= 2
    f = _by(sampling.check(make_items(recs, imgs, over)), "sampling.unseen")
    assert f.severity in ("medium", "high")
    assert f.details["unseen"]["grade"] == ["poorly differentiated"]
    assert set(f.items) == set(over)


@pytest.mark.real_data
def test_removed_class_at_a_site_is_a_missing_cell(glas_subset):
    recs, imgs = glas_subset
    over = {r.id: {"site": "Other hospital"} for r in recs[:8]}  # first 8 are all tumour
    assert all(r.tumour == 1 for r in recs[:8])
    f = _by(sampling.check(make_items(recs, imgs, over)), "sampling.missing_cells")
    assert f.severity != "info"
    assert {
        "column": "site",
        "value": "Other hospital",
        "missing_class": "non-tumour",
        "n_in_group": 8,
    } in f.details["missing"]


@pytest.mark.real_data
def test_group_performance_flags_the_bad_group(glas_subset):
    recs, imgs = glas_subset
    rng = np.random.default_rng(0)
    items = []
    for r, it in zip(recs, make_items(recs, imgs), strict=True):
        bad = it.meta["grade"] == "moderately differentiated"
        p = (1 - r.tumour) if bad else r.tumour
        p = float(np.clip(p + rng.normal(0, 0.1), 0, 1))
        items.append(dataclasses.replace(it, heat=Heat(np.zeros(it.image.shape[:2], np.float32), p)))
    f = _by(sampling.check(items), "sampling.group_performance")
    assert f.severity in ("medium", "high")
    worse = {(w["column"], w["group"]) for w in f.details["worse_groups"]}
    assert ("grade", "moderately differentiated") in worse
    # no other grade is flagged
    assert {g for c, g in worse if c == "grade"} == {"moderately differentiated"}
    # seen-in-training items are excluded
    fs = sampling.check(items, seen_in_training={it.id for it in items[:30]})
    assert _by(fs, "sampling.group_performance").details["n"] == len(items) - 30


@pytest.mark.real_data
def test_counts_table_and_imbalance(glas_subset):
    recs, imgs = glas_subset
    items = make_items(recs[:25], imgs[:25])  # 20 tumour, 5 non-tumour
    rows = sampling.counts_table(items)
    assert sum(r["n"] for r in rows) == 25
    f = _by(sampling.check(items), "sampling.imbalance")
    assert f.value == 4.0 and f.severity == "medium"


def _site_items(shares: dict[str, tuple[int, int]]) -> list:
    """Generated items: per site, (tumour, non-tumour) counts; tiny blank images (no pixels are read)."""
    from tests.audit import synth

    rng = np.random.default_rng(0)
    tumour = [t for site, (nt, nn) in shares.items() for t in [1] * nt + [0] * nn]
    sites = [site for site, (nt, nn) in shares.items() for _ in range(nt + nn)]
    images = [synth.he_image(rng, 16, 16) for _ in tumour]
    return [
        dataclasses.replace(it, meta={**it.meta, "site": s})
        for it, s in zip(synth.items(images, tumour), sites, strict=True)
    ]


def test_site_that_predicts_the_label_is_flagged():
    # the issue-16 cohort's shape: one site 92 % tumour, the other 55 %
    f = _by(sampling.check(_site_items({"A": (92, 8), "B": (55, 45)})), "sampling.site_confounding:site")
    assert f.severity == "medium" and 0.3 <= f.value < 0.5, (f.severity, f.value)
    assert "A: 92% tumour (92/100)" in f.message and f.details["p_value"] < 0.01
    # all of one class at one site and the other at the other: high
    f = _by(sampling.check(_site_items({"A": (40, 0), "B": (0, 40)})), "sampling.site_confounding:site")
    assert f.severity == "high" and f.value == pytest.approx(1.0)


def test_balanced_sites_are_not_flagged():
    f = _by(sampling.check(_site_items({"A": (30, 30), "B": (31, 29)})), "sampling.site_confounding:site")
    assert f.severity == "info" and f.value < 0.1 and "Not significant" in f.message
    # one site: nothing to compare
    assert not [
        x
        for x in sampling.check(_site_items({"A": (30, 30)}))
        if x.check.startswith("sampling.site_confounding")
    ]
