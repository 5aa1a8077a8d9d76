"""A real (tiny) heatmap run for the viewer tests: generated pyramidal slide, small seeded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pathxai.model.testing import save_tiny_model
from pathxai.pipeline.heatmap import HeatmapSettings, heatmap_slide
from pathxai.slide.testing import write_synthetic_slide


@pytest.fixture(scope="session")
def viewer_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``out`` (heatmaps under ``out/heatmaps``), ``slides`` (slide root), ``model``, ``store``."""
    base = tmp_path_factory.mktemp("viewer_run")
    slides = base / "slides"
    slides.mkdir()
    slide = write_synthetic_slide(
        slides / "synth.tif", 1536, 1024, mpp=0.5, levels=3, blobs=[(700, 500, 520, 360)]
    )
    model = save_tiny_model(base / "model")
    out = base / "out"
    settings = HeatmapSettings(model=str(model), workers=0, batch_size=16, exports=())
    result = heatmap_slide(slide, out / "heatmaps", settings)
    assert result.status == "done", result
    (out / "pathxai-view.json").write_text(json.dumps({"slide_roots": [str(slides)]}))
    return {
        "out": out,
        "slides": slides,
        "model": model,
        "store": out / "heatmaps" / "synth.h5",
        "slide": slide,
    }
