"""``pathxai heatmap SLIDE --model DIR`` with imported models (torchvision ResNet, a DenseNet, a timm ViT)."""

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


def _import_arch(folder: Path, arch: str, *extra: str) -> Path:
    """``pathxai model import`` of ``folder/NAME.pt`` (``arch`` = ``SOURCE:NAME``) into ``folder/NAME``."""
    name = arch.split(":", 1)[1]
    code = main(
        [
            "model",
            "import",
            "--arch",
            arch,
            "--weights",
            str(folder / f"{name}.pt"),
            *extra,
            "--classes",
            "normal,tumour",
            "--mpp",
            "1",
            "--size",
            "64",
            "--out",
            str(folder / name),
        ]
    )
    assert code == 0
    return folder / name


def _import(name: str, folder: Path) -> Path:
    torch.save(tv_model(name).state_dict(), folder / f"{name}.pt")
    return _import_arch(folder, f"torchvision:{name}")


def _import_timm(folder: Path, name: str, *extra: str) -> Path:
    return _import_arch(folder, f"timm:{name}", *extra)


def _heatmap_works(slide: Path, model_dir: Path, out: Path, workers: str) -> None:
    """``pathxai heatmap`` with the default method: every tile explained, finite non-zero LRP relevance."""
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
        assert store.attrs["status"] == "complete" and store.attrs["method"] == "lrp"
        relevance = store.tile_relevance()
        assert np.isfinite(relevance).all() and np.abs(relevance).max() > 0


@pytest.mark.parametrize(("name", "workers"), [("resnet18", "0"), ("densenet121", "1")])
def test_heatmap_on_imported_model(name: str, workers: str, slide: Path, tmp_path: Path) -> None:
    _heatmap_works(slide, _import(name, tmp_path), tmp_path / "out", workers)


@pytest.mark.parametrize("with_head", [False, True])
def test_heatmap_on_an_imported_vit(with_head: bool, slide: Path, tmp_path: Path) -> None:
    """A timm ViT-Tiny saved with torch.save(state_dict): one import command, then the default heatmap (AttnLRP).

    ``with_head``: the foundation-model way, a backbone without classifier plus a separately trained head.
    """
    import timm

    torch.manual_seed(0)
    extra = ["--arch-kwargs", '{"img_size": 64}']
    if with_head:
        model = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=64)
        torch.save(nn.Linear(192, 2).state_dict(), tmp_path / "head.pt")
        extra += ["--head-weights", str(tmp_path / "head.pt")]
    else:
        model = timm.create_model("vit_tiny_patch16_224", num_classes=2, img_size=64)
    torch.save(model.state_dict(), tmp_path / "vit_tiny_patch16_224.pt")
    model_dir = _import_timm(tmp_path, "vit_tiny_patch16_224", *extra)
    _heatmap_works(slide, model_dir, tmp_path / "out", "1" if with_head else "0")


def test_heatmap_refuses_a_model_lrp_cannot_explain(slide: Path, tmp_path: Path, capsys) -> None:
    """A model with a layer LRP has no rule for stops with its name, not with a silent wrong heatmap."""
    import timm

    torch.manual_seed(0)
    torch.save(timm.create_model("convnext_atto", num_classes=2).state_dict(), tmp_path / "convnext_atto.pt")
    model_dir = _import_timm(tmp_path, "convnext_atto")
    out = tmp_path / "o"
    code = main(["heatmap", str(slide), "--model", str(model_dir), "--out", str(out), "--workers", "0"])
    assert model_dir.is_dir()
    reported = capsys.readouterr().err + "".join(p.read_text() for p in out.glob("*.json"))
    assert code != 0
    assert "not supported yet" in reported
    assert not (out / "s.h5").exists()
