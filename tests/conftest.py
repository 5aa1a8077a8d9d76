"""Shared pytest fixtures: where the real data lives, and skipping with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Real data made by others, beside the repository (never copied into it).
SHARED_DATA = Path(os.environ.get("PATHXAI_SHARED_DATA", REPO.parent / "shared" / "data"))
WSI_DIR = SHARED_DATA / "wsi_samples"
GLAS_DIR = SHARED_DATA / "glas_warwick_qu"
KATHER_DIR = SHARED_DATA / "kather2016_tile_samples"
EBHI_DIR = SHARED_DATA / "ebhi_seg_colon"
HE_REFERENCE = SHARED_DATA / "he_reference_image" / "target_image.png"


#: Fixtures that need ``../shared/data``; a test using any of them (directly or through another
#: fixture) is marked ``real_data``, so ``pytest -m "not real_data"`` is the fresh-machine suite.
REAL_DATA_FIXTURES = frozenset(
    {"wsi_dir", "cmu_slide", "tcga_slide", "bracs_slide", "glas_dir", "kather_dir", "he_reference"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that depends on a real-data fixture with ``real_data``."""
    for item in items:
        if REAL_DATA_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_data)


@pytest.fixture(autouse=True, scope="session")
def _trust_cache(tmp_path_factory: pytest.TempPathFactory) -> object:
    """Heatmap runs cache their randomisation scores in a temporary folder, never in the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATHXAI_TRUST_CACHE", str(tmp_path_factory.mktemp("trust_cache")))
        yield


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (clone the repo beside ../shared to run this test)")
    return path


@pytest.fixture(scope="session")
def wsi_dir() -> Path:
    """The folder of the three real whole-slide images."""
    return _need(WSI_DIR)


@pytest.fixture(scope="session")
def cmu_slide() -> Path:
    """CMU-1-Small-Region.svs: Aperio JPEG, 0.499 mpp, one level."""
    return _need(WSI_DIR / "CMU-1-Small-Region.svs")


@pytest.fixture(scope="session")
def tcga_slide() -> Path:
    """TCGA-CR-7395: Aperio JPEG 2000, two levels, no mpp in its metadata."""
    return _need(WSI_DIR / "TCGA-CR-7395-01A-01-TS1.svs")


@pytest.fixture(scope="session")
def bracs_slide() -> Path:
    """BRACS_1640: generic pyramidal TIFF with a bogus mpp of 1000."""
    return _need(WSI_DIR / "BRACS_1640_N_3_cropped.tiff")


@pytest.fixture(scope="session")
def glas_dir() -> Path:
    """GlaS (Warwick-QU): 165 colon H&E images with manifest.csv."""
    return _need(GLAS_DIR)


@pytest.fixture(scope="session")
def kather_dir() -> Path:
    """Kather 2016 sample tiles (another centre)."""
    return _need(KATHER_DIR)


@pytest.fixture(scope="session")
def ebhi_dir() -> Path:
    """EBHI-Seg colon biopsies (adenocarcinoma / normal), a second centre."""
    return _need(EBHI_DIR)


@pytest.fixture(scope="session")
def he_reference() -> Path:
    """One 1000x1000 H&E reference image."""
    return _need(HE_REFERENCE)
