"""Quantus 0.6.0 as the oracle of the per-map scores that have a Quantus twin (skipped without Quantus).

Ours are batched numpy ports for streaming; these checks pin them to Quantus' definitions on the same
maps: ``Sparseness`` (Gini), ``Complexity`` (entropy), ``PointingGame`` and ``RelevanceMassAccuracy``
(Quantus counts signed relevance: ``positive_only=False``). Region perturbation, randomisation,
robustness and conservation are pathxai's own (streamed, probability-based, tissue-like baseline).
"""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from pathxai.explain.metrics import relevance_mass_accuracy
from pathxai.explain.scores import entropy, gini, pointing_game

quantus = pytest.importorskip("quantus")


@pytest.fixture
def case() -> dict:
    rng = np.random.default_rng(0)
    n = 6
    a = rng.normal(size=(n, 1, 8, 8)).astype(np.float32)
    s = (rng.random((n, 1, 8, 8)) > 0.6).astype(np.float32)
    s[0] = 0  # an empty mask: NaN in both
    return {
        "model": nn.Sequential(nn.Flatten(1), nn.Linear(192, 2)).eval(),
        "x_batch": rng.normal(size=(n, 3, 8, 8)).astype(np.float32),
        "y_batch": np.ones(n, dtype=int),
        "a_batch": a,
        "s_batch": s,
        "device": "cpu",
        "channel_first": True,
    }


def _q(metric: object, case: dict, masks: bool = False) -> np.ndarray:
    kw = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.items()}
    if not masks:
        kw.pop("s_batch")
    return np.asarray(metric(**kw), dtype=np.float64)  # type: ignore[operator]


def test_gini_and_entropy_match_quantus(case: dict) -> None:
    a = case["a_batch"][:, 0]
    np.testing.assert_allclose(
        gini(a), _q(quantus.Sparseness(normalise=False, abs=True, disable_warnings=True), case), atol=1e-5
    )
    np.testing.assert_allclose(
        entropy(a), _q(quantus.Complexity(normalise=False, abs=True, disable_warnings=True), case), rtol=1e-5
    )


def test_pointing_game_and_relevance_mass_match_quantus(case: dict) -> None:
    a, s = case["a_batch"][:, 0], case["s_batch"][:, 0] > 0
    ours = pointing_game(a, s)
    theirs = _q(quantus.PointingGame(disable_warnings=True), case, masks=True)
    assert np.isnan(ours[0])
    np.testing.assert_array_equal(ours[1:], theirs[1:])
    mass = relevance_mass_accuracy(a, s, positive_only=False)
    theirs_mass = _q(quantus.RelevanceMassAccuracy(disable_warnings=True), case, masks=True)
    np.testing.assert_allclose(mass[1:], theirs_mass[1:], rtol=1e-4)
