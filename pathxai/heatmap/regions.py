"""Region AUC: how well a heatmap's tiles separate tumour from non-tumour regions of a known truth map.

A truth map gives one code per level-0 pixel (e.g. :data:`pathxai.data.colon.TRUTH_CODES`). Each tile of
a heatmap store is labelled from the share of its level-0 area under each code (:func:`tile_truth`):

- **tumour** when at least ``min_fraction`` of the tile is a tumour code (lesion);
- **non-tumour** when at least ``min_fraction`` of the tile is a non-tumour code (normal tissue) and no
  pixel of it is a tumour code;
- **excluded** otherwise (glass, mixed tiles, tissue that is neither, and tiles without a score).

The region AUC (:func:`region_auc`) is the ROC AUC of a per-tile score (the tumour probability, or the
tile's summed relevance for the tumour class) over the labelled tiles, with a class-stratified
percentile bootstrap interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

from pathxai.store import HeatmapStore

__all__ = ["EXCLUDED", "RegionAUC", "TileRule", "describe", "region_auc", "store_region_auc", "tile_truth"]

#: Label of a tile that counts as neither tumour nor non-tumour.
EXCLUDED = -1


@dataclass(frozen=True)
class TileRule:
    """How a tile is labelled from the truth map.

    Attributes
    ----------
    tumour_codes, normal_codes
        Truth codes of tumour and of non-tumour pixels.
    min_fraction
        Share of the tile's area a class needs (a non-tumour tile must also hold no tumour pixel).
    """

    tumour_codes: tuple[int, ...] = (3,)
    normal_codes: tuple[int, ...] = (1,)
    min_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.min_fraction <= 1.0:
            raise ValueError(f"min_fraction must be in (0, 1], got {self.min_fraction}")
        if set(self.tumour_codes) & set(self.normal_codes):
            raise ValueError("a truth code cannot be both tumour and non-tumour")

    def describe(self) -> str:
        """One sentence for reports."""
        pct = f"{self.min_fraction:.0%}"
        return (
            f"tumour tile: >= {pct} of its area in a lesion; non-tumour tile: >= {pct} from a normal image "
            "and no lesion pixel; other tiles (glass, mixed, adenocarcinoma images outside the lesion) excluded"
        )


@dataclass(frozen=True)
class RegionAUC:
    """A region AUC with its bootstrap interval and the tile counts it rests on.

    ``auc``/``low``/``high`` are NaN when one class has no tile.
    """

    auc: float
    low: float
    high: float
    n_tumour: int
    n_non_tumour: int
    n_excluded: int
    score: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def tile_truth(truth: np.ndarray, l0_coords: np.ndarray, l0_size: float, rule: TileRule) -> np.ndarray:
    """Label tiles (1 tumour, 0 non-tumour, :data:`EXCLUDED`) from a level-0 truth map.

    Parameters
    ----------
    truth
        ``(H, W)`` integer truth codes at level 0.
    l0_coords
        ``(N, 2)`` level-0 ``(x, y)`` tile origins.
    l0_size
        Tile side in level-0 pixels (may be fractional; the window is rounded to whole pixels).
    rule
        The labelling rule.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` int8 labels. Area outside the map counts as neither class.
    """
    if truth.ndim != 2:
        raise ValueError(f"truth must be a 2-D code map, got shape {truth.shape}")
    coords = np.asarray(l0_coords, dtype=np.float64).reshape(-1, 2)
    h, w = truth.shape
    tum = np.isin(truth, rule.tumour_codes)
    nor = np.isin(truth, rule.normal_codes)
    # summed-area tables: the count of each class in any window in O(1)
    sat_t = np.pad(tum.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sat_n = np.pad(nor.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    labels = np.full(coords.shape[0], EXCLUDED, dtype=np.int8)
    for i, (x, y) in enumerate(coords):
        x0, y0 = round(x), round(y)
        x1, y1 = round(x + l0_size), round(y + l0_size)
        area = float((x1 - x0) * (y1 - y0))
        cx0, cx1 = min(max(x0, 0), w), min(max(x1, 0), w)
        cy0, cy1 = min(max(y0, 0), h), min(max(y1, 0), h)
        if area <= 0:
            continue
        n_t = sat_t[cy1, cx1] - sat_t[cy0, cx1] - sat_t[cy1, cx0] + sat_t[cy0, cx0]
        n_n = sat_n[cy1, cx1] - sat_n[cy0, cx1] - sat_n[cy1, cx0] + sat_n[cy0, cx0]
        if n_t >= rule.min_fraction * area:
            labels[i] = 1
        elif n_t == 0 and n_n >= rule.min_fraction * area:
            labels[i] = 0
    return labels


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney ROC AUC (ties count one half)."""
    n1 = int(y.sum())
    n0 = y.size - n1
    ranks = rankdata(s)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def region_auc(
    labels: np.ndarray, scores: np.ndarray, n_boot: int = 1000, seed: int = 0, score: str = ""
) -> RegionAUC:
    """ROC AUC of ``scores`` over the tiles labelled 1 (tumour) or 0 (non-tumour).

    Tiles labelled :data:`EXCLUDED` or with a non-finite score are left out (counted in ``n_excluded``).
    The 95 % interval resamples tiles within each class (``n_boot`` times, seeded).
    """
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in length")
    keep = (labels >= 0) & np.isfinite(scores)
    y, s = labels[keep] == 1, scores[keep]
    n1, n0 = int(y.sum()), int((~y).sum())
    nan = float("nan")
    if n1 == 0 or n0 == 0:
        return RegionAUC(nan, nan, nan, n1, n0, int((~keep).sum()), score)
    value = _auc(y, s)
    rng = np.random.default_rng(seed)
    pos, neg = s[y], s[~y]
    both = np.ones(n1 + n0, dtype=bool)
    both[n1:] = False
    boots = [
        _auc(both, np.concatenate([rng.choice(pos, n1), rng.choice(neg, n0)])) for _ in range(int(n_boot))
    ]
    low, high = (float(q) for q in np.quantile(boots, [0.025, 0.975])) if boots else (nan, nan)
    return RegionAUC(value, low, high, n1, n0, int((~keep).sum()), score)


def store_region_auc(
    store: HeatmapStore, truth: np.ndarray, rule: TileRule | None = None, n_boot: int = 1000
) -> dict[str, Any]:
    """Region AUC of a heatmap store's tiles against a level-0 truth map of its slide.

    Scores: the probability of the store's target class and, when the store holds relevance, each
    tile's summed relevance for that class.

    Returns
    -------
    dict
        ``rule`` (its sentence and parameters), ``tile_l0_size``, ``labels`` (per tile), and
        ``probability`` / ``relevance`` (:meth:`RegionAUC.to_dict`; ``relevance`` is None without one).
    """
    rule = rule or TileRule()
    a = store.attrs
    l0_size = float(a["size"]) * float(a["mpp"]) / float(a["slide_mpp"])
    labels = tile_truth(truth, store.coords, l0_size, rule)
    target = int(a.get("target_class", 1))
    prob = store.probabilities[:, target]
    out: dict[str, Any] = {
        "rule": {"text": rule.describe(), **asdict(rule)},
        "tile_l0_size": l0_size,
        "labels": labels.tolist(),
        "probability": region_auc(labels, prob, n_boot, score="tumour probability").to_dict(),
        "relevance": None,
    }
    if store.has_relevance:
        rel = np.nansum(store.tile_relevance().reshape(store.n_tiles, -1).astype(np.float64), axis=1)
        rel[~np.isfinite(prob)] = np.nan  # tiles not analysed
        out["relevance"] = region_auc(labels, rel, n_boot, score="summed tumour relevance").to_dict()
    return out


def describe(result: dict[str, Any]) -> str:
    """One line: the probability (and relevance) region AUC with intervals and tile counts."""
    p = result["probability"]
    text = (
        f"region AUC {p['auc']:.3f} (95 % CI {p['low']:.3f}-{p['high']:.3f}) of the tumour probability over "
        f"{p['n_tumour']} tumour and {p['n_non_tumour']} non-tumour tiles"
    )
    r = result.get("relevance")
    if r:
        text += f"; summed LRP relevance {r['auc']:.3f} ({r['low']:.3f}-{r['high']:.3f})"
    return text
