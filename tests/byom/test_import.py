"""``pathxai model import``: round trips from the usual weight files, the linear head, every error case, trust."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pathxai.cli import main
from pathxai.errors import ModelError
from pathxai.model import load_model, load_model_with_card, save_model
from pathxai.model.importer import ImportSpec, import_model, read_state_dict, strip_prefixes, tumour_index
from tests.byom.conftest import tv_model

timm = pytest.importorskip("timm")


def spec(weights: Path, **kw: object) -> ImportSpec:
    args: dict[str, object] = {
        "arch": "torchvision:resnet18",
        "weights": weights,
        "classes": ("normal", "Tumour"),
        "mpp": 0.5,
        "input_size": 64,
    }
    args.update(kw)
    return ImportSpec(**args)  # type: ignore[arg-type]


def logits(model: nn.Module, size: int = 64) -> np.ndarray:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model.eval()(x).numpy()


@pytest.mark.parametrize("name", ["plain.pt", "plain.safetensors", "ckpt.pth"])
def test_round_trip(name: str, resnet18_files: tuple[nn.Module, Path], tmp_path: Path) -> None:
    original, folder = resnet18_files
    model, card = import_model(spec(folder / name))
    save_model(model, card, tmp_path / "m")
    loaded, loaded_card = load_model_with_card(tmp_path / "m")
    np.testing.assert_array_equal(logits(loaded), logits(original))
    assert loaded_card.arch == "torchvision:resnet18"
    assert loaded_card.classes == ("normal", "Tumour") and loaded_card.tumour_index == 1
    assert loaded_card.mean == (0.485, 0.456, 0.406) and loaded_card.input_size == 64
    assert len(loaded_card.source["weights_sha256"]) == 64
    assert loaded_card.source.get("stripped_prefix", "") == ("module." if name == "ckpt.pth" else "")
    assert loaded_card.trust_code is False


def test_cli_import(resnet18_files: tuple[nn.Module, Path], tmp_path: Path, capsys) -> None:
    original, folder = resnet18_files
    out = tmp_path / "cli"
    code = main(
        [
            "model",
            "import",
            "--arch",
            "torchvision:resnet18",
            "--weights",
            str(folder / "ckpt.pth"),
            "--classes",
            "tumour,stroma,other",
            "--mpp",
            "1",
            "--size",
            "64",
            "--out",
            str(out),
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.25,0.25,0.25",
        ]
    )
    # three classes do not fit the two-logit weights: one clear line, exit 2
    assert code == 2
    assert "fc.weight" in capsys.readouterr().err
    code = main(
        [
            "model",
            "import",
            "--arch",
            "torchvision:resnet18",
            "--weights",
            str(folder / "ckpt.pth"),
            "--classes",
            "stroma,tumour",
            "--mpp",
            "1",
            "--size",
            "64",
            "--out",
            str(out),
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.25,0.25,0.25",
        ]
    )
    assert code == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["mean"] == [0.5, 0.5, 0.5] and card["std"] == [0.25, 0.25, 0.25]
    assert card["tumour_index"] == 1 and card["command"].startswith("pathxai model import")
    np.testing.assert_array_equal(logits(load_model(out)), logits(original))


def test_linear_head_on_torchvision_backbone(resnet18_files: tuple[nn.Module, Path], tmp_path: Path) -> None:
    _original, folder = resnet18_files
    head = nn.Linear(512, 3)
    torch.save(head.state_dict(), tmp_path / "head.pt")
    model, card = import_model(
        spec(folder / "plain.pt", head_weights=tmp_path / "head.pt", classes=("a", "tumor", "c"))
    )
    assert card.source["ignored_tensors"] == ["fc.bias", "fc.weight"]
    save_model(model, card, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    backbone = tv_model("resnet18")
    backbone.fc = nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = head(backbone(x))
        torch.testing.assert_close(loaded(x), expected)


def test_timm_backbone_with_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    backbone = timm.create_model("resnet18", num_classes=0).eval()
    torch.save({f"model.{k}": v for k, v in backbone.state_dict().items()}, tmp_path / "b.pt")
    torch.save(nn.Linear(backbone.num_features, 2).state_dict(), tmp_path / "head.pt")
    model, card = import_model(
        spec(
            tmp_path / "b.pt",
            arch="timm:resnet18",
            head_weights=tmp_path / "head.pt",
            classes=("tumour", "x"),
        )
    )
    save_model(model, card, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert card.tumour_index == 0 and card.arch_kwargs == {"linear_head": {"features": 512}}
    np.testing.assert_allclose(logits(loaded), logits(model), rtol=1e-6, atol=1e-6)


def test_timm_vit_tiny_imports(tmp_path: Path) -> None:
    """The issue's ViT-Tiny case: a timm backbone saved with torch.save(state_dict) plus a linear head."""
    torch.manual_seed(0)
    backbone = timm.create_model("vit_tiny_patch16_224", num_classes=0).eval()
    torch.save(backbone.state_dict(), tmp_path / "vit.pt")
    torch.save(nn.Linear(192, 2).state_dict(), tmp_path / "head.pt")
    model, card = import_model(
        spec(
            tmp_path / "vit.pt",
            arch="timm:vit_tiny_patch16_224",
            head_weights=tmp_path / "head.pt",
            input_size=224,
        )
    )
    save_model(model, card, tmp_path / "m")
    assert load_model(tmp_path / "m").head.out_features == 2


def _pickled_module(tmp_path: Path) -> Path:
    torch.save(nn.Linear(2, 2), tmp_path / "whole.pt")
    return tmp_path / "whole.pt"


ERRORS = {
    "pickled module": (lambda d, p: {"weights": _pickled_module(p)}, "pickled Python objects"),
    "non-tensor dict": (
        lambda d, p: {"weights": _save(p / "cfg.pt", {"lr": 0.1, "name": "x"})},
        "not of tensors",
    ),
    "non-tensor in state": (
        lambda d, p: {"weights": _save(p / "mixed.pt", {"state_dict": {"a": torch.ones(1), "b": 3}})},
        "not tensors",
    ),
    "missing file": (lambda d, p: {"weights": p / "nope.pt"}, "not found"),
    "not a weights file": (lambda d, p: {"weights": _text(p / "x.pt")}, "cannot read weights"),
    "bad safetensors": (lambda d, p: {"weights": _text(p / "x.safetensors")}, "not a valid safetensors"),
    "unknown torchvision": (
        lambda d, p: {"weights": d / "plain.pt", "arch": "torchvision:resnet19"},
        "did you mean",
    ),
    "unknown timm": (lambda d, p: {"weights": d / "plain.pt", "arch": "timm:not_a_model"}, "unknown timm"),
    "bad spec": (lambda d, p: {"weights": d / "plain.pt", "arch": "keras:resnet"}, "is not one of"),
    "missing keys": (lambda d, p: {"weights": d / "plain.pt", "arch": "torchvision:resnet34"}, "missing"),
    "unexpected keys": (
        lambda d, p: {
            "weights": _save(p / "x.pt", {**torch.load(d / "plain.pt"), "extra.weight": torch.ones(1)})
        },
        "1 unexpected",
    ),
    "wrong shape": (lambda d, p: {"weights": d / "plain.pt", "classes": ("a", "tumour", "b")}, "has shape"),
    "no tumour class": (lambda d, p: {"weights": d / "plain.pt", "classes": ("a", "b")}, "--tumour-class"),
    "unknown tumour class": (
        lambda d, p: {"weights": d / "plain.pt", "tumour_class": "cancer"},
        "not one of the classes",
    ),
    "untrusted python": (
        lambda d, p: {"weights": d / "plain.pt", "arch": "python:tests.byom.factories:resnet18"},
        "--trust-code",
    ),
    "head of wrong size": (
        lambda d, p: {
            "weights": d / "plain.pt",
            "head_weights": _save(p / "h.pt", nn.Linear(100, 2).state_dict()),
        },
        "the head takes 100 features",
    ),
    "head for other classes": (
        lambda d, p: {
            "weights": d / "plain.pt",
            "head_weights": _save(p / "h.pt", nn.Linear(512, 5).state_dict()),
        },
        "5 outputs",
    ),
    "head not linear": (
        lambda d, p: {
            "weights": d / "plain.pt",
            "head_weights": _save(p / "h.pt", {"w": torch.ones(2, 512)}),
        },
        "'weight' and 'bias'",
    ),
}


def _save(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


def _text(path: Path) -> Path:
    path.write_text("not weights")
    return path


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_are_one_clear_line(case: str, resnet18_files: tuple[nn.Module, Path], tmp_path: Path) -> None:
    make, expected = ERRORS[case]
    _, folder = resnet18_files
    with pytest.raises(ModelError, match=expected) as info:
        import_model(spec(**make(folder, tmp_path)))  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_strip_prefixes_and_tumour_index() -> None:
    state = {"module.model.a": torch.ones(1), "module.model.b": torch.ones(1)}
    stripped, prefix = strip_prefixes(state, {"a", "b"})
    assert set(stripped) == {"a", "b"} and prefix == "module.model."
    # keys that already fit are left alone even when they start with a prefix
    assert strip_prefixes({"model.a": torch.ones(1)}, {"model.a"})[1] == ""
    assert tumour_index(("Normal", "TUMOR"), None) == 1
    assert tumour_index(("x", "y"), "y") == 1
    with pytest.raises(ModelError):
        tumour_index(("tumour", "Tumor"), None)


def test_read_state_dict_refuses_empty(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="empty"):
        read_state_dict(_save(tmp_path / "e.pt", {}))


def test_trusted_code_is_recorded_and_needs_the_environment(
    resnet18_files: tuple[nn.Module, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original, folder = resnet18_files
    monkeypatch.delenv("PATHXAI_TRUST_CODE", raising=False)
    model, card = import_model(
        spec(folder / "plain.pt", arch="python:tests.byom.factories:resnet18", trust_code=True)
    )
    assert card.trust_code is True
    save_model(model, card, tmp_path / "m")
    with pytest.raises(ModelError, match="PATHXAI_TRUST_CODE=1"):
        load_model(tmp_path / "m")
    monkeypatch.setenv("PATHXAI_TRUST_CODE", "1")
    np.testing.assert_array_equal(logits(load_model(tmp_path / "m")), logits(original))
