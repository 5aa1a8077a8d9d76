from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import pathxai
from pathxai.model import DEFAULT_MODEL_DIR, load_default_model, load_model_with_card, preprocess
from pathxai.model.datasets import read_rgb, rescale_to_mpp


def test_default_model_is_package_data_and_loads() -> None:
    assert DEFAULT_MODEL_DIR.is_relative_to(Path(pathxai.__file__).parent)
    size = (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size
    assert size < 8_000_000
    model = load_default_model()
    card = model.pathxai_card
    assert not model.training
    assert card.arch == "compact_cnn" and card.classes[card.tumour_index] == "tumour"
    assert "research use only" in card.licence
    assert card.command.startswith("pathxai train")
    assert card.training["manifest_sha256"]
    assert card.training["test_patients"] and set(card.training["test_patients"]).isdisjoint(
        card.training["train_patients"]
    )
    x = torch.zeros(1, 3, card.input_size + 32, card.input_size + 32)
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
    assert p.shape == (1, 2) and torch.isfinite(p).all()


def test_default_model_loads_without_shared_data(tmp_path: Path) -> None:
    env = dict(os.environ, PATHXAI_SHARED_DATA=str(tmp_path / "absent"))
    code = "from pathxai.model import load_default_model as f; m = f(); print(m.pathxai_card.arch)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "compact_cnn"


def test_default_model_separates_held_out_glas_images(glas_dir: Path, glas_rows) -> None:
    model, card = load_model_with_card("default")
    held_out = set(card.training["test_patients"])
    rows = [r for r in glas_rows if r["patient"] in held_out]
    benign = [r for r in rows if r["tumor"] == "0"][:3]
    malignant = [r for r in rows if r["tumor"] == "1"][:3]
    probs = {}
    for r in benign + malignant:
        img = rescale_to_mpp(read_rgb(glas_dir / r["path"]), float(r["mpp"]), card.mpp)
        with torch.no_grad():
            probs[r["id"]] = float(torch.softmax(model(preprocess(img, card)), 1)[0, card.tumour_index])
    pb = np.array([probs[r["id"]] for r in benign])
    pm = np.array([probs[r["id"]] for r in malignant])
    # whole-image scores of patients the model never saw: malignant above benign on average
    assert pm.mean() > pb.mean() + 0.2, (pb, pm)
    assert ((pm[:, None] > pb[None, :]).mean()) >= 0.75, (pb, pm)
