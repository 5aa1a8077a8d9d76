"""Fixtures for heatmap tests: a tiny saved model (random weights, real safetensors + card) and small slides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathxai.slide.testing import write_synthetic_slide

TINY_WIDTHS = (8, 16, 16, 32, 32)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compact CNN with random weights saved like a trained model (64 px tiles at 1 µm/px)."""
    from pathxai.model.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", TINY_WIDTHS, mpp=1.0)


@pytest.fixture(scope="session")
def small_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1600 x 1200 px generated pyramidal TIFF at 0.5 µm/px (about 70 tissue tiles of 64 px at 1 µm/px)."""
    return write_synthetic_slide(tmp_path_factory.mktemp("slides") / "small.tiff", 1600, 1200, mpp=0.5)
