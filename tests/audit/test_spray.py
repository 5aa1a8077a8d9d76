import numpy as np
import pytest

from pathxai.audit import spray


def test_eigengap_recovers_planted_strategies():
    rng = np.random.default_rng(0)
    protos = np.zeros((3, 8, 8))
    protos[0, :4, :4] = 1
    protos[1, 4:, 4:] = 1
    protos[2, :, 3:5] = 1
    maps = np.concatenate([p + rng.normal(0, 0.05, (40, 8, 8)) for p in protos])
    labels, vals, k, dist = spray.cluster_heatmaps(maps)
    assert k == 3
    truth = np.repeat(np.arange(3), 40)
    for c in range(3):
        assert len(set(labels[truth == c])) == 1
    assert vals[0] == pytest.approx(0, abs=1e-8)
    assert dist.shape == (120,)


def test_too_few_maps():
    with pytest.raises(ValueError):
        spray.cluster_heatmaps(np.zeros((3, 4, 4)))


@pytest.mark.real_data
def test_spray_on_shortcut_model_finds_a_pen_cluster(pen_cohort):
    from pathxai.audit import artifacts
    from pathxai.audit.findings import Thresholds

    items = pen_cohort["items"]
    masks = {it.id: artifacts.detect(it.image, it.mpp) for it in items}
    th = Thresholds()
    res = spray.compute(items, masks, th)
    assert res is not None and 2 <= res.k <= 8
    fs = spray.check(items, th, res)
    art = next(f for f in fs if f.check == "sampling.spray:artifact")
    assert art.family == "class-correlated"
    assert art.details["best"]["value"] == "pen:blue", art.message
    assert art.severity in ("medium", "high")
    assert art.regions
