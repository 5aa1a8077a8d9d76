"""The PxP protocol's area under the AUC-vs-rate curve, computed by hand."""

from __future__ import annotations

import itertools

import pytest

from pathxai.prune.pxp import PXP_RATES, curve_area, pxp_areas, pxp_table


def test_rates_are_0_to_95_percent_in_5_percent_steps() -> None:
    assert len(PXP_RATES) == 20 and PXP_RATES[0] == 0.0 and PXP_RATES[-1] == 0.95
    assert all(abs(b - a - 0.05) < 1e-9 for a, b in itertools.pairwise(PXP_RATES))


def test_curve_area_is_the_normalised_trapezoid() -> None:
    assert curve_area([0, 0.5, 1.0], [1.0, 1.0, 0.0]) == pytest.approx(0.75)
    assert curve_area([0.5, 0.0, 1.0], [1.0, 1.0, 0.0]) == pytest.approx(0.75)  # order does not matter
    assert curve_area([0.0, 0.95], [0.9, 0.9]) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        curve_area([0.0], [1.0])
    with pytest.raises(ValueError):
        curve_area([0.0, 0.0], [1.0, 0.5])


def _row(crit: str, ratio: float, seed: int, auc: float, ft: float = 0, variant: str = "v") -> dict[str, str]:
    return {
        "criterion": crit, "ratio": f"{ratio:.4f}", "seed": str(seed), "finetune_epochs": f"{ft:g}",
        "auc": f"{auc}", "variant": variant,
    }  # fmt: skip


def test_areas_use_the_unpruned_row_at_rate_zero_and_skip_incomplete_curves() -> None:
    rows = [
        {"criterion": "none", "ratio": "0", "seed": "0", "finetune_epochs": "0", "auc": "0.9", "variant": ""},
        _row("lrp", 0.5, 0, 0.8),
        _row("lrp", 0.9, 0, 0.5),
        _row("lrp", 0.5, 1, 0.6),
        _row("lrp", 0.9, 1, 0.4),
        _row("lrp", 0.5, 2, 0.7),  # incomplete: no 0.9
        _row("lrp", 0.9, 2, 0.1, ft=1),  # fine-tuned rows do not count
        _row("weight", 0.5, 0, 0.5),
        _row("weight", 0.9, 0, 0.5),
        _row("random", 0.5, 0, 0.9, variant="other"),
        _row("random", 0.9, 0, 0.9, variant="other"),
    ]
    areas = pxp_areas(rows, rates=(0.0, 0.5, 0.9), variant="v")
    got = {(a.criterion, a.seed): a.area for a in areas}
    lrp0 = (0.5 * (0.9 + 0.8) / 2 + 0.4 * (0.8 + 0.5) / 2) / 0.9
    lrp1 = (0.5 * (0.9 + 0.6) / 2 + 0.4 * (0.6 + 0.4) / 2) / 0.9
    assert set(got) == {("lrp", 0), ("lrp", 1), ("weight", 0)}
    assert got[("lrp", 0)] == pytest.approx(lrp0) and got[("lrp", 1)] == pytest.approx(lrp1)
    table = {c: (m, s, n) for c, m, s, n in pxp_table(areas)}
    assert table["lrp"][0] == pytest.approx((lrp0 + lrp1) / 2) and table["lrp"][2] == 2
    assert table["weight"][1] == 0.0 and table["weight"][2] == 1
    assert {a.criterion for a in pxp_areas(rows, rates=(0.0, 0.5, 0.9))} == {"lrp", "weight", "random"}
