"""The trust summary of a heatmap run: present, deterministic, skippable, cached, and able to say "fails"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pathxai.heatmap import trust as trust_mod
from pathxai.heatmap.trust import N_TILES, choose_tiles, randomisation, randomisation_cache
from pathxai.pipeline.heatmap import HeatmapSettings, heatmap_slide
from pathxai.store import HeatmapStore
from pathxai.store.trust import read_trust, trust_line
from pathxai.store.verify import verify_store


def _settings(model: Path, **kw: object) -> HeatmapSettings:
    base: dict[str, object] = {"model": str(model), "batch_size": 16, "workers": 0, "exports": ()}
    base.update(kw)
    return HeatmapSettings(**base)  # type: ignore[arg-type]


def test_run_stores_a_deterministic_trust_summary(
    tiny_model: Path, small_slide: Path, tmp_path: Path
) -> None:
    a = heatmap_slide(small_slide, tmp_path / "a", _settings(tiny_model))
    b = heatmap_slide(small_slide, tmp_path / "b", _settings(tiny_model))
    ta, tb = a.summary["trust"], b.summary["trust"]
    assert ta["method"] == "lrp"
    faith = ta["faithfulness"]
    assert 0 < faith["n_tiles"] <= min(N_TILES, a.summary["n_tiles"])
    assert faith["ratio"] == pytest.approx(faith["morf_auc"] / faith["random_auc"])
    assert ta["randomisation"]["verdict"] in ("passes", "weak", "fails")
    assert ta == tb  # same tiles, same scores; the second run read the model's cached randomisation
    from pathxai.model import load_model_with_card

    sha = load_model_with_card(str(tiny_model))[1].weights_sha256
    cached = json.loads(randomisation_cache(sha, "lrp").read_text())
    assert cached["value"] == ta["randomisation"]
    with HeatmapStore.open(a.outputs["h5"]) as st:
        assert read_trust(st.attrs) == ta
    check = verify_store(a.outputs["h5"])  # the attribute checksum was renewed with the trust summary
    assert not check.problems, check.problems
    on_disk = json.loads(Path(a.outputs["json"]).read_text())
    assert on_disk["trust"] == ta
    assert trust_line(ta).startswith("faithfulness ") and "randomisation " in trust_line(ta)


def test_no_trust_skips_it(tiny_model: Path, small_slide: Path, tmp_path: Path) -> None:
    res = heatmap_slide(small_slide, tmp_path, _settings(tiny_model, trust=False))
    assert "trust" not in res.summary and "trust_s" not in res.summary["timings"]
    with HeatmapStore.open(res.outputs["h5"]) as st:
        assert read_trust(st.attrs) is None
        assert trust_line(read_trust(st.attrs)) == "no trust summary"


def test_choose_tiles_is_seeded_and_bounded() -> None:
    ok = np.ones(500, dtype=bool)
    ok[::3] = False
    a, b = choose_tiles(ok, 64, seed=0), choose_tiles(ok, 64, seed=0)
    assert np.array_equal(a, b) and len(a) == 64 and ok[a].all() and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, choose_tiles(ok, 64, seed=1))
    assert np.array_equal(choose_tiles(ok[:30], 64), np.flatnonzero(ok[:30]))


class _EdgeModel(nn.Module):
    """A classifier whose gradient map is ~2x, whatever its weights (an edge detector in spirit)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the weights scale the output but not where the input's gradient is large: x * x drives it
        h = self.conv(x).mean(dim=(2, 3))
        return self.fc(h) * 1e-6 + torch.stack([(x * x).sum((1, 2, 3)), -(x * x).sum((1, 2, 3))], 1)


class _WeightModel(nn.Module):
    """A classifier whose map depends on its weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_map_that_ignores_the_weights_fails_randomisation() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    from pathxai.explain import Explainer

    for cls, expect in ((_EdgeModel, "fails"), (_WeightModel, "passes")):
        model = cls().eval()
        with Explainer(model, "gradient", channels_last=False) as ex:
            ref = ex(x, 0).relevance
        out = randomisation(model, "gradient", x, 0, ref)
        assert out["verdict"] == expect, (cls.__name__, out)


def test_randomisation_cache_is_keyed_and_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATHXAI_TRUST_CACHE", str(tmp_path))
    path = randomisation_cache("ab" * 32, "lrp/../x")
    assert path.parent == tmp_path and ".." not in path.name and path.suffix == ".json"
    calls: list[int] = []

    def compute() -> dict[str, object]:
        calls.append(1)
        return {"spearman": 0.1, "verdict": "passes"}

    key = {"version": 1, "weights_sha256": "ab" * 32, "method": "lrp"}
    first = trust_mod._cached(path, key, compute)
    second = trust_mod._cached(path, key, compute)
    assert first == second and len(calls) == 1  # the second call read the file
    trust_mod._cached(path, {**key, "method": "gradient"}, compute)
    assert len(calls) == 2  # another key computes again
    path.write_text("not json")
    assert trust_mod._cached(path, key, compute)["verdict"] == "passes" and len(calls) == 3


def test_trust_line() -> None:
    t = {
        "faithfulness": {"ratio": 0.7712, "n_tiles": 64},
        "randomisation": {"spearman": 0.2249, "verdict": "weak"},
    }
    assert trust_line(t) == "faithfulness 0.77x random on 64 tiles; randomisation weak (ρ=0.22)"
    assert trust_line({"method": "none", "status": "no relevance"}) == "no relevance"
