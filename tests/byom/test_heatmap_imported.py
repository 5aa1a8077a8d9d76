"""``pathxai heatmap SLIDE --model DIR`` with imported models (torchvision ResNet, a DenseNet)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pathxai.cli import main
from pathxai.slide.testing import write_synthetic_slide
from pathxai.store.heatmap import HeatmapStore
from tests.byom.conftest import tv_model


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_slide(tmp_path_factory.mktemp("slides") / "s.tiff", 800, 600, mpp=0.5)


def _import(name: str, folder: Path) -> Path:
    torch.save(tv_model(name).state_dict(), folder / f"{name}.pt")
    out = folder / name
    code = main(
        [
            "model",
            "import",
            "--arch",
            f"torchvision:{name}",
            "--weights",
            str(folder / f"{name}.pt"),
            "--classes",
            "normal,tumour",
            "--mpp",
            "1",
            "--size",
            "64",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


@pytest.mark.parametrize(("name", "workers"), [("resnet18", "0"), ("densenet121", "1")])
def test_heatmap_on_imported_model(name: str, workers: str, slide: Path, tmp_path: Path) -> None:
    model_dir = _import(name, tmp_path)
    out = tmp_path / "out"
    code = main(
        [
            "heatmap",
            str(slide),
            "--model",
            str(model_dir),
            "--out",
            str(out),
            "--workers",
            workers,
            "--batch-size",
            "8",
            "--exports",
            "png",
        ]
    )
    assert code == 0
    summary = json.loads((out / "s.json").read_text())
    assert summary["n_tiles"] > 5 and summary["n_failed_tiles"] == 0
    with HeatmapStore.open(out / "s.h5") as store:
        assert store.attrs["status"] == "complete"
        relevance = store.tile_relevance()
        assert np.isfinite(relevance).all() and np.abs(relevance).max() > 0


def test_heatmap_refuses_a_model_lrp_cannot_explain(slide: Path, tmp_path: Path, capsys) -> None:
    """A model with a layer LRP has no rule for stops with its name, not with a silent wrong heatmap."""
    import timm

    torch.manual_seed(0)
    backbone = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=64)
    torch.save(backbone.state_dict(), tmp_path / "vit.pt")
    torch.save(nn.Linear(192, 2).state_dict(), tmp_path / "head.pt")
    code = main(
        [
            "model",
            "import",
            "--arch",
            "timm:vit_tiny_patch16_224",
            "--weights",
            str(tmp_path / "vit.pt"),
            "--head-weights",
            str(tmp_path / "head.pt"),
            "--arch-kwargs",
            '{"img_size": 64}',
            "--classes",
            "normal,tumour",
            "--mpp",
            "1",
            "--size",
            "64",
            "--out",
            str(tmp_path / "vit"),
        ]
    )
    assert code == 0
    out = tmp_path / "o"
    model_dir = tmp_path / "vit"
    code = main(["heatmap", str(slide), "--model", str(model_dir), "--out", str(out), "--workers", "0"])
    assert model_dir.is_dir()
    reported = capsys.readouterr().err + "".join(p.read_text() for p in out.glob("*.json"))
    assert code != 0
    assert "not supported yet" in reported
    assert not (out / "s.h5").exists()
