"""Fixtures for model-layer tests: a handful of real GlaS images, tiny architectures."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GLAS_MANIFEST = REPO / "data_manifests" / "glas.csv"
KATHER_MANIFEST = REPO / "data_manifests" / "kather2016_samples.csv"

#: A small compact CNN that trains in well under a second per step.
TINY = {"widths": [8, 16, 16, 32, 32]}


@pytest.fixture(scope="session")
def glas_rows(glas_dir: Path) -> list[dict[str, str]]:
    """Rows of data_manifests/glas.csv (skips when GlaS is absent)."""
    return list(csv.DictReader(open(GLAS_MANIFEST, newline="")))


@pytest.fixture(scope="session")
def tiny_glas_manifest(glas_rows: list[dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-image GlaS manifest: train = 2 benign + 2 malignant (two patients each side), test = 1 + 1."""
    by = {}
    for r in glas_rows:
        by.setdefault((r["split"], r["tumor"]), []).append(r)
    chosen = []
    for split, n in (("train", 2), ("test", 1)):
        for t in ("0", "1"):
            chosen += by[(split, t)][:n]
    out = tmp_path_factory.mktemp("manifest") / "tiny.csv"
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(chosen[0]))
        w.writeheader()
        w.writerows(chosen)
    return out
