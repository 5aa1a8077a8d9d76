"""Temperature scaling and the operating threshold: fitting, folding into the loaded model, the card."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pathxai.errors import ModelError
from pathxai.model.calibration import (
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    negative_log_likelihood,
    pick_threshold,
    probs_at_temperature,
)
from pathxai.model.card import CARD_FILENAME, ModelCard
from pathxai.model.io import load_model_with_card, save_model
from pathxai.model.testing import save_tiny_model


def _set_temperature(folder: Path, temperature: float, threshold: float = 0.5) -> None:
    card = ModelCard.from_json((folder / CARD_FILENAME).read_text())
    new = dataclasses.replace(card, temperature=temperature, threshold=threshold)
    (folder / CARD_FILENAME).write_text(new.to_json())


def _logits(model: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.no_grad():
        return model(torch.randn(4, 3, 64, 64))


def test_loader_divides_logits_by_the_card_temperature(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "m")
    raw = _logits(load_model_with_card(folder)[0])
    _set_temperature(folder, 2.5)
    net, card = load_model_with_card(folder)
    assert card.temperature == 2.5
    torch.testing.assert_close(_logits(net), raw / 2.5, rtol=1e-5, atol=1e-6)


def test_saving_a_calibrated_model_does_not_scale_it_twice(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "m")
    _set_temperature(folder, 3.0)
    net, card = load_model_with_card(folder)
    calibrated = _logits(net)
    save_model(net, card, tmp_path / "again")
    net2, card2 = load_model_with_card(tmp_path / "again")
    assert card2.temperature == 3.0
    torch.testing.assert_close(_logits(net2), calibrated, rtol=1e-5, atol=1e-6)


def test_cards_without_calibration_keep_temperature_1_and_threshold_half(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "m")
    data = json.loads((folder / CARD_FILENAME).read_text())
    data.pop("temperature")
    data.pop("threshold")
    card = ModelCard.from_dict(data)
    assert (card.temperature, card.threshold) == (1.0, 0.5)


@pytest.mark.parametrize(("key", "value"), [("temperature", 0.0), ("temperature", -1.0), ("threshold", 1.0)])
def test_card_rejects_bad_calibration_values(tmp_path: Path, key: str, value: float) -> None:
    data = json.loads((save_tiny_model(tmp_path / "m") / CARD_FILENAME).read_text())
    data[key] = value
    with pytest.raises(ModelError, match=key):
        ModelCard.from_dict(data)


def test_fit_temperature_recovers_the_temperature_of_the_labels() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 4.0, 20_000)
    y = (rng.random(z.size) < 1.0 / (1.0 + np.exp(-z / 2.0))).astype(int)
    probs = 1.0 / (1.0 + np.exp(-z))  # overconfident by a factor of 2
    t = fit_temperature(y, probs)
    assert t == pytest.approx(2.0, rel=0.05)
    before = expected_calibration_error(y, probs)
    after = expected_calibration_error(y, probs_at_temperature(probs, t))
    assert after < before / 3


def test_fit_temperature_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature([1, 1, 1], [0.9, 0.8, 0.7])


def test_ece_is_zero_when_frequencies_match_and_the_gap_otherwise() -> None:
    assert expected_calibration_error([0, 1, 0, 1], [0.55, 0.55, 0.55, 0.55]) == pytest.approx(0.05)
    assert expected_calibration_error([1, 1], [0.95, 0.95]) == pytest.approx(0.05)
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0


def test_fit_calibration_fits_temperature_and_threshold_and_lowers_the_errors() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 4.0, 20_000)
    y = (rng.random(z.size) < 1.0 / (1.0 + np.exp(-z / 2.0))).astype(int)
    probs = 1.0 / (1.0 + np.exp(-z))  # overconfident by a factor of 2
    sites = ["a", "b"] * (z.size // 2)
    fit = fit_calibration(y, probs, sites)
    assert fit["temperature"] == pytest.approx(fit_temperature(y, probs))
    assert fit["threshold"] == pick_threshold(
        y, probs_at_temperature(probs, fit_temperature(y, probs)), sites
    )
    assert fit["ece_after"] < fit["ece_before"] / 3
    assert fit["nll_after"] < fit["nll_before"] == pytest.approx(negative_log_likelihood(y, probs))
    with pytest.raises(ValueError, match="both classes"):
        fit_calibration([1, 1, 1], [0.9, 0.8, 0.7], ["a"] * 3)


def test_pick_threshold_balances_each_site() -> None:
    # site a separates at 0.3, site b at 0.7: only a threshold between 0.3 and 0.7 suits both.
    y = [0, 1, 0, 1]
    p = [0.2, 0.75, 0.25, 0.8]
    sites = ["a", "a", "b", "b"]
    t = pick_threshold(y, p, sites)
    assert 0.25 < t <= 0.75
    assert pick_threshold([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.25)


def test_calibrate_cli_writes_temperature_and_threshold_then_evaluate_uses_them(
    tiny_glas_manifest: Path, glas_dir: Path, tmp_path: Path
) -> None:
    from pathxai.cli import main

    folder = save_tiny_model(tmp_path / "m", widths=(8, 16, 16), input_size=48, mpp=2.48)
    common = ["--manifest", str(tiny_glas_manifest), "--data-root", str(glas_dir)]
    assert main(["model", "calibrate", "--model", str(folder), *common, "--split", "test", "--quiet"]) == 0
    card = ModelCard.from_json((folder / CARD_FILENAME).read_text())
    cal = card.extra["calibration"]
    assert card.temperature == pytest.approx(cal["temperature"]) and card.threshold == cal["threshold"]
    assert 0.0 < card.threshold < 1.0 and cal["split"] == "test" and cal["n_patches"] > 0
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9
    out = tmp_path / "eval.json"
    assert (
        main(["evaluate", *common, "--model", str(folder), "--split", "test", "--out", str(out), "--quiet"])
        == 0
    )
    ev = json.loads(out.read_text())
    assert ev["settings"]["threshold"] == card.threshold == ev["image_level"]["threshold"]
    assert ev["settings"]["temperature"] == card.temperature
