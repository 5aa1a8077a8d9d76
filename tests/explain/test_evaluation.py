"""explain-eval metrics on constructed cases where the answer is known.

The model here only looks at one 8 x 8 region of a 32 x 32 image (a linear read-out of that region), so
an explanation that marks the region is perfectly localised and deletes the evidence first; a random
map must score as random; a "method" that returns the input itself ignores the weights and must fail the
randomisation test.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from pathxai.explain.bootstrap import bootstrap_mean, bootstrap_ratio
from pathxai.explain.evaluation import EvalBatch, ExplanationEvaluator, MethodSpec, recommend
from pathxai.explain.methods import METHODS, Method, register_method
from pathxai.explain.randomisation import (
    cascading_copies,
    cascading_randomisation,
    randomisable_layers,
    verdict,
)
from pathxai.explain.scores import conservation, entropy, gini, map_correlation, pointing_game

SIZE = 32
REGION = (slice(0, 8), slice(8, 16))


def region_mask() -> np.ndarray:
    m = np.zeros((SIZE, SIZE), bool)
    m[REGION] = True
    return m


def region_model(bias: float = 1.0) -> nn.Module:
    """Tumour logit = mean of the region's pixels (all channels) - ``bias``; non-tumour = its negative."""
    lin = nn.Linear(3 * SIZE * SIZE, 2)
    w = torch.zeros(3, SIZE, SIZE)
    w[:, REGION[0], REGION[1]] = 1.0 / (3 * 64)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([-w.reshape(-1), w.reshape(-1)]))
        lin.bias.copy_(torch.tensor([bias, -bias]))
    return nn.Sequential(nn.Flatten(1), lin).eval()


def region_batch(n: int = 64, seed: int = 0) -> EvalBatch:
    """Images with a bright region (the evidence) on a dark background, target = tumour (1)."""
    g = torch.Generator().manual_seed(seed)
    x = -1.0 + 0.3 * torch.rand(n, 3, SIZE, SIZE, generator=g)
    x[:, :, REGION[0], REGION[1]] = 2.0 + 0.3 * torch.rand(n, 3, 8, 8, generator=g)
    masks = np.broadcast_to(region_mask(), (n, SIZE, SIZE)).copy()
    return EvalBatch(
        x=x,
        x_jitter=x * 1.01,
        x_shift=torch.roll(x, shifts=(-1, -1), dims=(2, 3)),
        target=torch.ones(n, dtype=torch.int64),
        tumour=np.ones(n, bool),
        mask=masks,
        has_mask=np.ones(n, bool),
    )


@pytest.fixture
def test_methods() -> Iterator[None]:
    """Register two test-only methods (a random map and the input itself) and remove them afterwards."""

    @register_method("test_random_map")
    class RandomMap(Method):
        def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            g = torch.Generator().manual_seed(int(1000 * float(x.abs().sum())) % (2**31))
            return self.model(x), torch.rand(x.shape, generator=g)

    @register_method("test_input_map")
    class InputMap(Method):
        def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.model(x), x.detach().abs().clone()

    try:
        yield
    finally:
        METHODS.pop("test_random_map", None)
        METHODS.pop("test_input_map", None)


def evaluate(methods: list[str], batch: EvalBatch, model: nn.Module | None = None) -> dict:
    specs = [MethodSpec.parse(m) for m in methods]
    with ExplanationEvaluator(model or region_model(), specs, randomisation_patches=16) as ev:
        half = len(batch.x) // 2
        for part in (slice(0, half), slice(half, None)):  # two streamed batches
            ev.update(
                EvalBatch(
                    batch.x[part],
                    batch.x_jitter[part],
                    batch.x_shift[part],
                    batch.target[part],
                    batch.tumour[part],
                    None if batch.mask is None else batch.mask[part],
                    batch.has_mask[part],
                )
            )
        return ev.summary()


# -- the constructed model ----------------------------------------------------------------------
def test_region_model_reads_only_the_region() -> None:
    model, batch = region_model(), region_batch(4)
    x = batch.x.clone()
    x[:, :, 20:, 20:] = 5.0
    assert torch.allclose(model(x), model(batch.x))
    p = torch.softmax(model(batch.x), 1)[:, 1]
    assert bool(((p > 0.85) & (p < 0.95)).all())  # confident, not saturated: deletion can show


# -- localisation -------------------------------------------------------------------------------
def test_localisation_is_perfect_for_the_right_mask_and_nil_for_the_wrong_one() -> None:
    batch = region_batch(32)
    right = evaluate(["gradient_x_input"], batch)["methods"]["gradient_x_input"]["localisation"]
    assert right["relevance_mass"]["mean"] == pytest.approx(1.0)
    assert right["pointing_game"]["mean"] == 1.0
    assert right["mask_share"]["mean"] == pytest.approx(64 / SIZE**2)
    assert right["relevance_mass_ratio"]["mean"] == pytest.approx(SIZE**2 / 64)
    wrong_batch = EvalBatch(**{**batch.__dict__, "mask": ~batch.mask})  # type: ignore[operator]
    wrong = evaluate(["gradient_x_input"], wrong_batch)["methods"]["gradient_x_input"]["localisation"]
    assert wrong["relevance_mass"]["mean"] == pytest.approx(0.0)
    assert wrong["pointing_game"]["mean"] == 0.0


# -- faithfulness -------------------------------------------------------------------------------
def test_random_explanation_scores_as_random_and_a_faithful_one_does_not(test_methods: None) -> None:
    result = evaluate(["test_random_map", "gradient_x_input"], region_batch(64))
    rnd = result["methods"]["test_random_map"]["faithfulness"]["morf_ratio"]
    assert rnd["ci_low"] < 1.0 < rnd["ci_high"]
    assert 0.8 < rnd["mean"] < 1.2
    good = result["methods"]["gradient_x_input"]["faithfulness"]
    assert good["morf_ratio"]["ci_high"] < 0.6  # the region is deleted first
    assert good["lerf_ratio"]["ci_low"] > 1.2  # ... and last in LeRF order
    assert good["morf_beats_random"]["mean"] > 0.9
    # probability-based areas stay positive
    assert good["morf_auc"]["ci_low"] > 0 and good["random_auc"]["ci_low"] > 0
    curves = result["curves"]
    assert (
        len(curves["fractions"]) == len(curves["gradient_x_input"]["morf"]) == len(curves["random"]["morf"])
    )
    assert curves["gradient_x_input"]["morf"][0] == pytest.approx(curves["random"]["morf"][0])


# -- randomisation ------------------------------------------------------------------------------
def test_a_method_that_ignores_the_weights_fails_randomisation(test_methods: None) -> None:
    result = evaluate(["test_input_map", "gradient"], region_batch(16))
    ignoring = result["methods"]["test_input_map"]
    assert ignoring["randomisation"]["cascading_spearman_full"]["mean"] == pytest.approx(1.0)
    assert ignoring["details"]["randomisation_verdict"] == "fails"
    gradient = result["methods"]["gradient"]
    assert abs(gradient["randomisation"]["cascading_spearman_full"]["mean"]) < 0.2
    assert gradient["details"]["randomisation_verdict"] == "passes"
    assert [c["layer"] for c in gradient["details"]["cascade"]] == ["1"]


def test_cascading_copies_randomise_top_down_and_leave_the_model_alone() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(1), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 8, 8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert randomisable_layers(model) == ["4", "0"]
    seen = []
    for name, copy in cascading_copies(model):
        changed = [k for k, v in copy.state_dict().items() if not torch.equal(v, before[k])]
        seen.append((name, sorted({k.split(".")[0] for k in changed})))
    assert seen == [("4", ["4"]), ("0", ["0", "4"])]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_full_randomisation_is_the_cascades_last_step() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(1), nn.LazyLinear(2)
    ).eval()
    x = torch.rand(3, 3, 10, 10)
    target = torch.tensor([0, 1, 1])
    x_ref = x.clone().requires_grad_(True)
    model(x_ref)[torch.arange(3), target].sum().backward()
    reference = (x_ref.grad * x).sum(1).detach().numpy()
    cascade = cascading_randomisation(model, "gradient_x_input", x, target, reference, seed=3)
    last = cascading_randomisation(model, "gradient_x_input", x, target, reference, seed=3, last_only=True)
    assert len(cascade.layers) == 3 and last.layers == cascade.layers[-1:]
    np.testing.assert_allclose(last.full, cascade.full, rtol=1e-6)
    # another seed gives other weights, so (almost surely) other correlations
    other = cascading_randomisation(model, "gradient_x_input", x, target, reference, seed=4, last_only=True)
    assert not np.allclose(other.full, last.full)


def test_verdict_thresholds() -> None:
    assert verdict(0.05) == "passes" and verdict(0.3) == "weak" and verdict(0.9) == "fails"
    assert verdict(None) == "unknown" and verdict(float("nan")) == "unknown"


# -- robustness ---------------------------------------------------------------------------------
def test_robustness_is_one_for_an_unchanged_map_and_aligned_for_a_shift() -> None:
    batch = region_batch(16)
    rob = evaluate(["gradient_x_input"], batch)["methods"]["gradient_x_input"]["robustness"]
    assert rob["stain_jitter_pearson"]["mean"] == pytest.approx(1.0)  # a linear model: map scales with x
    # the shifted image moves the content, not the model's region: the maps no longer align
    assert rob["shift_pearson"]["mean"] < 0.99


# -- complexity and conservation ----------------------------------------------------------------
def test_gini_of_one_hot_is_the_maximum_and_of_uniform_zero() -> None:
    n = 16 * 16
    one_hot = np.zeros((1, 16, 16))
    one_hot[0, 3, 5] = -2.0
    assert gini(one_hot)[0] == pytest.approx((n - 1) / n)
    assert gini(np.ones((1, 16, 16)))[0] == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(20, 16, 16))
    assert np.all(gini(maps) < (n - 1) / n)
    assert np.isnan(gini(np.zeros((1, 4, 4)))[0])
    assert entropy(one_hot)[0] == pytest.approx(0.0)
    assert entropy(np.ones((1, 16, 16)))[0] == pytest.approx(np.log(n))


def test_gini_matches_the_sorted_sum_definition() -> None:
    """Gini of Hurley & Rickard 2009 (Quantus ``Sparseness``): 1 - 2 sum_k a_k / |a|_1 (n - k + 1/2) / n."""
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(5, 8, 8))
    for m, g in zip(maps, gini(maps), strict=True):
        a = np.sort(np.abs(m.ravel()))
        n = len(a)
        k = np.arange(1, n + 1)
        expected = 1 - 2 * np.sum(a / a.sum() * (n - k + 0.5) / n)
        assert g == pytest.approx(expected)


def test_lrp_conservation_is_reported_and_near_one_without_biases() -> None:
    result = evaluate(["lrp_epsilon_gamma_box", "gradient_x_input"], region_batch(8), region_model(bias=0.0))
    cons = result["methods"]["lrp_epsilon_gamma_box"]["axiomatic"]["conservation"]
    assert cons["mean"] == pytest.approx(1.0, abs=1e-3)
    assert "axiomatic" not in result["methods"]["gradient_x_input"]


def test_scores_on_small_cases() -> None:
    rel = np.zeros((2, 4, 4))
    rel[0, 0, 0] = 1
    rel[1, 3, 3] = 1
    mask = np.zeros((2, 4, 4), bool)
    mask[:, :2, :2] = True
    np.testing.assert_array_equal(pointing_game(rel, mask), [1.0, 0.0])
    assert np.isnan(pointing_game(rel, np.zeros_like(mask))).all()
    a = np.arange(16.0).reshape(1, 4, 4)
    assert map_correlation(a, 2 * a + 1)[0] == pytest.approx(1.0)
    assert map_correlation(a, -a)[0] == pytest.approx(-1.0)
    assert map_correlation(a, a**3, kind="spearman")[0] == pytest.approx(1.0)
    assert map_correlation(a - 7.5, -(a - 7.5), kind="spearman", absolute=True)[0] == pytest.approx(1.0)
    np.testing.assert_allclose(conservation(np.ones((1, 2, 2)), np.array([2.0])), [2.0])


# -- bootstrap, specs, recommendation ------------------------------------------------------------
def test_bootstrap_intervals() -> None:
    v = np.random.default_rng(0).normal(1.0, 1.0, 400)
    s = bootstrap_mean(v)
    assert s["ci_low"] < 1.0 < s["ci_high"] and s["ci_high"] - s["ci_low"] < 0.3  # type: ignore[operator]
    assert bootstrap_mean(np.array([np.nan]))["mean"] is None
    r = bootstrap_ratio(np.full(50, 2.0), np.full(50, 4.0))
    assert r["mean"] == r["ci_low"] == r["ci_high"] == 0.5


def test_method_spec_parsing() -> None:
    spec = MethodSpec.parse("lrp_epsilon_gamma_box:gamma=0.1")
    assert spec.name == "lrp_epsilon_gamma_box" and spec.options == {"gamma": 0.1}
    assert spec.label == "lrp_epsilon_gamma_box:gamma=0.1"
    assert MethodSpec.parse("smoothgrad:n_iter=4").options == {"n_iter": 4}
    with pytest.raises(ValueError, match="unknown explanation method"):
        MethodSpec.parse("nope")
    with pytest.raises(ValueError, match="key=number"):
        MethodSpec.parse("lrp:gamma")


def _entry(ratio: float, high: float, rv: str, one_pass: bool = True) -> dict:
    s = {"mean": ratio, "ci_low": ratio - 0.1, "ci_high": high, "n": 10}
    return {
        "faithfulness": {"morf_ratio": s, "morf_ratio_tumour": s},
        "details": {"one_pass": one_pass, "randomisation_verdict": rv},
    }


def test_recommendation_needs_faithfulness_and_randomisation() -> None:
    rec = recommend(
        {
            "a": _entry(0.5, 0.6, "fails"),  # most faithful but ignores the weights
            "b": _entry(0.7, 0.8, "weak"),
            "c": _entry(0.6, 1.05, "passes"),  # passes randomisation, not better than random
            "ig": _entry(0.3, 0.4, "passes", one_pass=False),
        }
    )
    assert rec["method"] == "b"
    reasons = {r["method"]: r["excluded"] for r in rec["ranking"]}
    assert reasons == {"b": None, "a": "fails the randomisation test", "c": "not faster than random deletion"}
