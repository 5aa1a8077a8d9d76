"""Shared fixture: one real demo run on a generated slide with a tiny seeded model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pathxai.model import ModelCard, build_model, save_model
from pathxai.pipeline.demo import DemoSettings, run_demo
from pathxai.slide.testing import write_synthetic_slide


def _tiny_model(out: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("compact_cnn", num_classes=2, widths=[8, 16, 16])
    card = ModelCard(
        arch="compact_cnn",
        classes=("non-tumour", "tumour"),
        tumour_index=1,
        input_size=64,
        mpp=2.0,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        arch_kwargs={"widths": [8, 16, 16]},
    )
    return save_model(model.eval(), card, out)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("demo")
    (base / "slides").mkdir()
    slide = write_synthetic_slide(
        base / "slides" / "s1.tif", 1536, 1024, mpp=0.5, levels=3, blobs=[(700, 500, 520, 360)]
    )
    model = _tiny_model(base / "model")
    settings = DemoSettings(model=str(model), reference_tiles=6, drift_tiles=4, batch_size=16)
    res = run_demo(base / "out", slide=slide, settings=settings)
    return res, settings, model
