"""The P-ClArC concept projection: its algebra, its hook, and the model folder round trip."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pathxai.errors import ModelError
from pathxai.explain import Explainer
from pathxai.model.card import ModelCard
from pathxai.model.io import load_model_with_card, save_model
from pathxai.model.projection import ConceptProjection, install_projection, projection_spec
from pathxai.model.testing import save_tiny_model


def test_projection_sets_the_concept_component_to_the_clean_level():
    v = torch.tensor([3.0, 4.0, 0.0])
    proj = ConceptProjection(3, v, offset=0.5)
    a = torch.randn(4, 3, 5, 5)
    out = proj(a)
    unit = v / 5
    coef = torch.einsum("c,nchw->nhw", unit, out)
    assert torch.allclose(coef, torch.full_like(coef, 0.5), atol=1e-5)
    # the orthogonal part is untouched
    ortho = a - unit.view(1, 3, 1, 1) * torch.einsum("c,nchw->nhw", unit, a)[:, None]
    assert torch.allclose(out - unit.view(1, 3, 1, 1) * 0.5, ortho, atol=1e-5)
    with pytest.raises(ValueError):
        proj(torch.zeros(1, 4, 2, 2))


def test_projected_model_round_trips_and_explains(tmp_path):
    src = save_tiny_model(tmp_path / "m")
    model, card = load_model_with_card(src)
    x = torch.rand(2, 3, 64, 64)
    before = model(x)
    direction = torch.randn(16)
    install_projection(model, "features", 16, direction, offset=0.1)
    after = model(x)
    assert not torch.allclose(before, after)
    card2 = dataclasses.replace(card, projection=projection_spec("features", 16, method="clarc-p"))
    save_model(model, card2, tmp_path / "p")
    loaded, lcard = load_model_with_card(tmp_path / "p")
    assert lcard.projection is not None and lcard.projection["layer"] == "features"
    assert torch.allclose(loaded(x), after, atol=1e-6)
    # the saved direction is the unit vector, read from safetensors
    assert torch.allclose(loaded.concept_projection.direction, direction / direction.norm(), atol=1e-6)
    # LRP runs through the hook (the projection changes the relevance)
    with Explainer(loaded, "lrp") as ex:
        r_proj = ex(x[:1], target=1).relevance
    with Explainer(model_without := load_model_with_card(src)[0], "lrp") as ex:
        r_plain = ex(x[:1], target=1).relevance
    assert model_without is not None
    assert r_proj.shape == r_plain.shape
    assert not torch.allclose(torch.as_tensor(r_proj), torch.as_tensor(r_plain))


def test_card_projection_must_name_a_layer(tmp_path):
    src = save_tiny_model(tmp_path / "m")
    card = load_model_with_card(src)[1]
    with pytest.raises(ModelError, match="projection"):
        ModelCard.from_dict({**card.to_dict(), "projection": {"layer": 3}})
    bad = dataclasses.replace(card, projection=projection_spec("no_such_layer", 16))
    (tmp_path / "m" / "model_card.json").write_text(bad.to_json())
    with pytest.raises(ModelError, match="no_such_layer"):
        load_model_with_card(tmp_path / "m")


def test_pruning_refuses_a_projected_model(tmp_path):
    from pathxai.pipeline.prune import prune_from_manifest

    src = save_tiny_model(tmp_path / "m")
    model, card = load_model_with_card(src)
    install_projection(model, "features", 16, torch.randn(16))
    save_model(model, dataclasses.replace(card, projection=projection_spec("features", 16)), tmp_path / "p")
    with pytest.raises(ModelError, match="concept projection"):
        prune_from_manifest(tmp_path / "p", tmp_path / "none.csv", tmp_path, "lrp", 0.3, tmp_path / "out")
