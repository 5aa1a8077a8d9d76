"""Clean controls: unmodified real GlaS images must not produce a high-severity finding."""

import pytest

from pathxai.audit import artifacts, labels, sampling, spray, stain
from pathxai.audit.findings import Thresholds
from tests.audit.conftest import make_items, with_heat

TH = Thresholds.from_mapping({"settings": {"permutations": 120, "bootstrap": 300}})


@pytest.mark.real_data
def test_model_free_checks_stay_quiet_on_clean_data(glas_subset):
    recs, imgs = glas_subset
    items = make_items(recs, imgs)
    fs = stain.check(items, TH) + artifacts.check(items, TH) + sampling.check(items, TH)
    assert fs
    high = [(f.check, f.value, f.message) for f in fs if f.severity == "high"]
    assert not high


@pytest.mark.real_data
def test_relevance_checks_stay_quiet_with_a_model_trained_on_clean_data(glas_subset, clean_model):
    recs, imgs = glas_subset
    net, card = clean_model
    items = with_heat(make_items(recs, imgs), net, card)
    masks = {it.id: artifacts.detect(it.image, it.mpp) for it in items}
    fs = artifacts.check(items, TH, artifacts.compute(items, masks))
    fs += [f for f in labels.check(items, TH) if f.check != "labels.candidates"]
    fs += spray.check(items, TH, artifact_masks=masks)
    assert any(f.check.startswith("artifact.relevance") for f in fs)
    assert any(f.check.startswith("sampling.spray") for f in fs)
    high = [(f.check, f.value, f.message) for f in fs if f.severity == "high"]
    assert not high
