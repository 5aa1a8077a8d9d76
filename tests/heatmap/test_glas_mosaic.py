"""End to end on real tissue: a GlaS mosaic slide with known benign/malignant positions, default model.

Floors were measured on this machine with the committed default model (see benchmarks/heatmap.md); they
leave margin for numerical noise, not for a broken pipeline (a shifted or mis-stitched canvas, or
relevance that ignores glands, fails them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pathxai.export import read_geojson
from pathxai.pipeline.heatmap import HeatmapSettings, heatmap_slide
from pathxai.store import HeatmapStore

from .glas_mosaic import build_glas_mosaic

AUC_FLOOR = 0.8


def _held_out_patients_or_skip() -> list[str]:
    from pathxai.model import DEFAULT_MODEL_DIR
    from pathxai.model.io import card_from_file

    if not (DEFAULT_MODEL_DIR / "model_card.json").is_file():
        pytest.skip("the default model is not installed")
    patients = card_from_file(DEFAULT_MODEL_DIR).training.get("test_patients")
    if not patients:
        pytest.skip("the default model's card does not list held-out patients")
    return list(patients)


@pytest.mark.real_data
@pytest.mark.slow
def test_mosaic_separates_malignant_from_benign(glas_dir: Path, tmp_path: Path) -> None:
    patients = _held_out_patients_or_skip()
    mosaic = build_glas_mosaic(glas_dir, tmp_path / "mosaic.tiff", patients)
    res = heatmap_slide(mosaic.path, tmp_path / "out", HeatmapSettings(batch_size=32, workers=1))
    assert res.status == "done" and res.summary["n_failed_tiles"] == 0
    rows, cols = mosaic.labels.shape
    cw, ch = mosaic.cell
    with HeatmapStore.open(res.outputs["h5"]) as st:
        f = st.l0_per_pixel(0)
        prob, rel = st.probability(0), st.relevance(0)
        scores = np.full((rows, cols), np.nan)
        mass, area = [], []
        for r in range(rows):
            for c in range(cols):
                # canvas pixels whose footprint lies inside the image cell
                x0, x1 = int(np.ceil(c * cw / f)), int((c + 1) * cw // f)
                y0, y1 = int(np.ceil(r * ch / f)), int((r + 1) * ch // f)
                p = prob[y0:y1, x0:x1]
                scores[r, c] = np.nanmean(p) if np.isfinite(p).any() else 0.0
                if mosaic.labels[r, c] == 1:
                    g = mosaic.glands[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw]
                    # gland fraction of each canvas pixel of the cell
                    gy = (np.arange(y0, y1) * f - r * ch + f / 2).astype(int).clip(0, ch - 1)
                    gx = (np.arange(x0, x1) * f - c * cw + f / 2).astype(int).clip(0, cw - 1)
                    gmask = g[np.ix_(gy, gx)]
                    rr = np.nan_to_num(rel[y0:y1, x0:x1])
                    from pathxai.explain.metrics import relevance_mass_accuracy

                    mass.append(float(relevance_mass_accuracy(rr, gmask)[0]))
                    area.append(float(gmask.mean()))
    auc = roc_auc_score(mosaic.labels.ravel(), scores.ravel())
    print(
        f"region AUC {auc:.3f}; gland relevance mass {np.nanmean(mass):.3f} vs gland area {np.mean(area):.3f}"
    )
    assert auc > AUC_FLOOR
    # the tumour evidence concentrates on glands more than their share of the area
    assert np.nanmean(mass) > np.mean(area)
    feats = read_geojson(res.outputs["geojson"])
    assert any(f["properties"]["classification"]["name"] == "Tumor" for f in feats)
