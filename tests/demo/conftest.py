"""Shared fixture: one real demo run on a generated slide with a tiny seeded model."""

from __future__ import annotations

import pytest

from pathxai.model.testing import save_tiny_model
from pathxai.pipeline.demo import DemoSettings, run_demo
from pathxai.slide.testing import write_synthetic_slide


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("demo")
    (base / "slides").mkdir()
    slide = write_synthetic_slide(
        base / "slides" / "s1.tif", 1536, 1024, mpp=0.5, levels=3, blobs=[(700, 500, 520, 360)]
    )
    model = save_tiny_model(base / "model")
    settings = DemoSettings(model=str(model), reference_tiles=6, drift_tiles=4, batch_size=16)
    res = run_demo(base / "out", slide=slide, settings=settings)
    return res, settings, model
