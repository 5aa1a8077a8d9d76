"""A tiny planted cohort and audit report for mitigation tests (generated images, no ../shared)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from pathxai.mitigate.finetune import FinetuneSettings
from tests.audit.plant import draw_pen
from tests.audit.synth import MPP, he_image

FAST = FinetuneSettings(epochs=1, batch_size=8, stride=64)


def write_cohort(tmp: Path) -> Path:
    """12 generated images: blue pen on most tumour training images; clean test rows."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        tumour = i % 2
        split = "train" if i < 8 else "test"
        img = he_image(rng)
        if tumour and split == "train":
            img = draw_pen(img, rng, "blue", width=9)[0]
        path = tmp / f"im{i}.png"
        Image.fromarray(img).save(path)
        rows.append(
            {
                "id": f"im{i}",
                "path": path.name,
                "tumor": tumour,
                "patient": f"p{i // 2}",
                "split": split,
                "mpp": MPP,
            }
        )
    man = tmp / "manifest.csv"
    with man.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return man


def write_report(tmp: Path, findings: list[dict]) -> Path:
    """``tmp/audit/report.json`` holding ``findings``; the audit folder."""
    (tmp / "audit").mkdir()
    (tmp / "audit" / "report.json").write_text(json.dumps({"findings": findings}))
    return tmp / "audit"


PEN = {
    "id": "artifact.relevance:pen:blue",
    "check": "artifact.relevance:pen:blue",
    "family": "class-correlated",
    "severity": "high",
    "value": 4.0,
}
