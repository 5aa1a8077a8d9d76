from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pathxai.model.splits import assert_disjoint, fold_of, grouped_folds


@st.composite
def cohorts(draw):
    n_pat = draw(st.integers(4, 12))
    labels, groups = [], []
    for p in range(n_pat):
        for _ in range(draw(st.integers(1, 6))):
            labels.append(draw(st.integers(0, 1)))
            groups.append(f"p{p}")
    k = draw(st.integers(2, min(5, n_pat)))
    return labels, groups, k, draw(st.integers(0, 10))


@settings(max_examples=60, deadline=None)
@given(cohorts())
def test_grouped_folds_never_leak_patients_and_cover_everything(c) -> None:
    labels, groups, k, seed = c
    if max(labels.count(0), labels.count(1)) < k:  # too few items of every class for k folds
        with pytest.raises(ValueError, match=f"no class has {k} items"):
            grouped_folds(labels, groups, k, seed)
        return
    folds = grouped_folds(labels, groups, k, seed)
    assert len(folds) == k
    seen = np.concatenate([te for _, te in folds])
    assert sorted(seen.tolist()) == list(range(len(labels)))  # each item tested exactly once
    g = np.asarray(groups)
    for tr, te in folds:
        assert set(g[tr]).isdisjoint(set(g[te]))
        assert len(tr) + len(te) == len(labels)
    assert grouped_folds(labels, groups, k, seed)[0][1].tolist() == folds[0][1].tolist()  # seeded


def test_tiny_cohort_where_no_class_fills_every_fold_is_refused_clearly() -> None:
    # found by hypothesis (scikit-learn's own message was cryptic): 3 + 1 items cannot fill 4 folds
    with pytest.raises(ValueError, match=r"no class has 4 items .*0: 3, 1: 1"):
        grouped_folds([0, 0, 0, 1], ["p0", "p1", "p2", "p3"], 4, seed=0)


def test_fold_of_matches_grouped_folds() -> None:
    labels = [0, 1] * 10
    groups = [f"p{i // 2}" for i in range(20)]
    f = fold_of(labels, groups, 4, seed=3)
    for k, (_, te) in enumerate(grouped_folds(labels, groups, 4, seed=3)):
        assert (f[te] == k).all()


def test_bad_fold_counts_and_leak_detection() -> None:
    with pytest.raises(ValueError):
        grouped_folds([0, 1, 0], ["a", "a", "b"], 3)
    with pytest.raises(AssertionError, match="both sides"):
        assert_disjoint(["a", "b"], ["b"])


def test_glas_manifest_split_is_patient_disjoint(glas_rows) -> None:
    train = {r["patient"] for r in glas_rows if r["split"] == "train"}
    test = {r["patient"] for r in glas_rows if r["split"] == "test"}
    assert train and test and train.isdisjoint(test)
    labels = [int(r["tumor"]) for r in glas_rows]
    groups = [r["patient"] for r in glas_rows]
    assert fold_of(labels, groups, 4, seed=0).tolist() == [int(r["fold"]) for r in glas_rows]
