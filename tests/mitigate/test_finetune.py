"""The concept fine-tuning: RR-ClArC and A-ClArC train only the layers after the concept layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathxai.mitigate.cav import Concept, fit_concept
from pathxai.mitigate.finetune import ConceptEdit, FinetuneSettings, finetune, freeze_through
from pathxai.model.io import load_model_with_card
from pathxai.model.testing import save_tiny_model
from tests.audit.synth import he_image


@pytest.mark.parametrize("mode", ["rr", "add"])
def test_concept_edits_train_only_the_head(tmp_path, mode):
    model, card = load_model_with_card(save_tiny_model(tmp_path / "m"))
    rng = np.random.default_rng(0)
    imgs = [he_image(rng, 96, 128) for _ in range(4)]
    concept = Concept("features", torch.nn.functional.normalize(torch.randn(16), dim=0), 0.0, 1.0, 2.0, 4)
    st = FinetuneSettings(epochs=1, batch_size=4, stride=32, lr=1e-2)
    new, hist = finetune(model, card, imgs, [0, 1, 0, 1], st, edit=ConceptEdit(concept, mode))
    assert np.isfinite(hist[0]["loss"])
    old, now = model.state_dict(), new.state_dict()
    assert all(torch.equal(old[k], now[k]) for k in old if k.startswith("features."))
    assert not torch.equal(old["classifier.weight"], now["classifier.weight"])
    if mode == "rr":
        assert hist[0]["penalty"] > 0


def test_freeze_through_stops_after_the_layer(tmp_path):
    model, _ = load_model_with_card(save_tiny_model(tmp_path / "m"))
    n = freeze_through(model, "features.4")  # second convolution of the tiny net
    frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"features.0.weight", "features.1.weight", "features.1.bias", "features.4.weight"}
    assert n == sum(p.numel() for k, p in model.named_parameters() if k in frozen)


def test_concept_from_pairs_points_along_the_artifact(tmp_path):
    model, card = load_model_with_card(save_tiny_model(tmp_path / "m"))
    rng = np.random.default_rng(1)
    clean = np.stack([he_image(rng, 64, 64) for _ in range(6)])
    art = clean.copy()
    art[:, 20:40] = (35, 60, 190)  # a blue band
    c = fit_concept(model, card, "features", art, clean)
    assert abs(float(c.direction.norm()) - 1) < 1e-5 and c.separation > 1
    with pytest.raises(ValueError, match="does not change"):
        fit_concept(model, card, "features", clean, clean)
