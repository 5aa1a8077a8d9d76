"""``pathxai prune`` on imported models: real channel removal, a folder that loads anywhere, provenance kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pathxai.cli import main
from pathxai.errors import ModelError
from pathxai.model import load_model, load_model_with_card, save_model
from pathxai.model.importer import ImportSpec, import_model
from pathxai.prune import PruningPlan
from pathxai.prune.report import PruneReport, summary
from pathxai.prune.save import PLAN_FILENAME, pruned_card, save_pruned_model
from tests.byom.conftest import tv_model

REPO = Path(__file__).resolve().parents[2]

#: Run in a fresh interpreter on a pruned folder: unpickling is made impossible before loading.
FRESH_LOAD = """
import json, pickle, sys
import torch

def refuse(*args, **kwargs):
    raise AssertionError("the loader unpickled something")

torch.load = refuse
pickle.load = pickle.loads = refuse
from pathxai.explain import explain
from pathxai.model import load_model_with_card

model, card = load_model_with_card(sys.argv[1])
x = torch.randn(3, 3, card.input_size, card.input_size, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    out = model(x)
expl = explain(model, x, card.tumour_index, method="lrp")
print(json.dumps({
    "shape": list(out.shape),
    "finite": bool(torch.isfinite(out).all()),
    "params": sum(p.numel() for p in model.parameters()),
    "conv_channels": sum(m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)),
    "relevance_shape": list(expl.relevance.shape),
    "relevance_finite": bool(torch.isfinite(torch.as_tensor(expl.relevance)).all()),
    "relevance_max": float(torch.as_tensor(expl.relevance).abs().max()),
}))
"""


def _cohort(root: Path) -> Path:
    """Eight 128 px H&E-like images, four patients with one image per class; patient p0 is the test split."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["id,path,label,patient,split,mpp"]
    for i in range(8):
        img = np.full((128, 128, 3), 235, np.uint8)
        img[8:120, 8:120] = rng.integers(0, 60, (112, 112, 3)) + np.array(
            [110 + 30 * (i % 2), 50, 140], np.uint8
        )
        Image.fromarray(img).save(root / f"i{i}.png")
        split = "test" if i < 2 else "train"
        rows.append(f"i{i},i{i}.png,{'malignant' if i % 2 else 'benign'},p{i // 2},{split},1.0")
    (root / "m.csv").write_text("\n".join(rows) + "\n")
    return root / "m.csv"


def _conv_channels(model: nn.Module) -> int:
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.slow
def test_prune_cli_shrinks_an_imported_resnet50(tmp_path: Path) -> None:
    """Import a ResNet-50 saved with torch.save(state_dict), prune 30 % with LRP, load it in a fresh process."""
    torch.save(tv_model("resnet50").state_dict(), tmp_path / "r50.pt")
    imported = tmp_path / "r50"
    args = ["--classes", "normal,tumour", "--mpp", "1", "--size", "64", "--out", str(imported)]
    assert (
        main(
            [
                "model",
                "import",
                "--arch",
                "torchvision:resnet50",
                "--weights",
                str(tmp_path / "r50.pt"),
                *args,
            ]
        )
        == 0
    )
    manifest = _cohort(tmp_path / "cohort")
    out = tmp_path / "pruned"
    code = main(
        [
            "prune", "--model", str(imported), "--manifest", str(manifest), "--criterion", "lrp",
            "--ratio", "0.3", "--reference-per-class", "2", "--drift-patches", "2", "--no-latency",
            "--quiet", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    original, source_card = load_model_with_card(imported)
    card = json.loads((out / "model_card.json").read_text())
    # the import provenance is kept, the pruning is recorded beside it
    assert card["arch"] == "torchvision:resnet50" and card["source"] == source_card.source
    assert card["extra"]["pruning"] == {"criterion": "lrp", "ratio": 0.3, "plan_file": PLAN_FILENAME}
    assert card["channel_plan"] and "fc" not in card["channel_plan"]
    report = json.loads((out / PLAN_FILENAME).read_text())
    assert report["plan"]["criterion"] == "lrp" and report["plan"]["n_reference"] == 4
    assert report["source_weights_sha256"] == source_card.weights_sha256
    # nothing but safetensors, JSON and the report: no pickled code
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "model_card.json", PLAN_FILENAME]
    assert (out / "model.safetensors").read_bytes()[8:9] == b"{"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("PATHXAI_TRUST_CODE", None)
    done = subprocess.run(
        [sys.executable, "-c", FRESH_LOAD, str(out)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    before = sum(p.numel() for p in original.parameters())
    assert fresh["shape"] == [3, 2] and fresh["finite"]
    assert fresh["params"] == report["plan"]["metrics_after"]["params"] < 0.8 * before
    assert fresh["conv_channels"] < 0.8 * _conv_channels(original)
    assert (
        fresh["relevance_shape"] == [3, 64, 64] and fresh["relevance_finite"] and fresh["relevance_max"] > 0
    )


def _report(plan: PruningPlan, card_sha: str) -> PruneReport:
    class Study:
        def to_dict(self) -> dict[str, object]:
            return {"data": "random reference images"}

    return PruneReport(
        plan=plan,
        drift=None,
        summary=summary(plan.metrics_before, plan.metrics_after),
        source_model="imported",
        source_weights_sha256=card_sha,
        prune_seconds=0.0,
        study=Study(),
    )


def _prune_and_save(model: nn.Module, card_path: Path, out: Path, criterion: str) -> tuple[nn.Module, Path]:
    model, card = load_model_with_card(card_path)
    ref = [(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1]))]
    plan, pruned = PruningPlan.compute_and_prune(model, criterion, 0.5, ref)
    save_pruned_model(pruned, pruned_card(card, plan), _report(plan, card.weights_sha256), out)
    return pruned.eval(), out


def _logits(model: nn.Module) -> np.ndarray:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model.eval()(x).numpy()


def test_pruned_backbone_with_linear_head_keeps_its_head(tmp_path: Path) -> None:
    """A backbone + separately trained linear head loses backbone channels, never the head's outputs."""
    backbone = tv_model("resnet18")
    backbone.fc = nn.Identity()
    torch.save(backbone.state_dict(), tmp_path / "b.pt")
    torch.manual_seed(2)
    torch.save(nn.Linear(512, 3).state_dict(), tmp_path / "h.pt")
    spec = ImportSpec(
        arch="torchvision:resnet18",
        weights=tmp_path / "b.pt",
        head_weights=tmp_path / "h.pt",
        classes=("normal", "stroma", "tumour"),
        mpp=1.0,
        input_size=64,
    )
    save_model(*import_model(spec), tmp_path / "m")
    pruned, out = _prune_and_save(backbone, tmp_path / "m", tmp_path / "p", "lrp")
    loaded, card = load_model_with_card(out)
    assert card.arch_kwargs["linear_head"] == {"features": 512} and card.source["head_weights"] == "h.pt"
    assert loaded.head.out_features == 3 and loaded.head.in_features < 512
    assert _conv_channels(loaded) < _conv_channels(load_model(tmp_path / "m"))
    np.testing.assert_allclose(_logits(loaded), _logits(pruned), rtol=1e-5, atol=1e-5)


def test_pruned_user_code_model_still_needs_trust(
    resnet18_files: tuple[nn.Module, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pruning keeps ``trust_code``: the pruned folder of a ``python:`` model loads only with PATHXAI_TRUST_CODE=1."""
    original, folder = resnet18_files
    spec = ImportSpec(
        arch="python:tests.byom.factories:resnet18",
        weights=folder / "plain.pt",
        classes=("normal", "tumour"),
        mpp=1.0,
        input_size=64,
        trust_code=True,
    )
    save_model(*import_model(spec), tmp_path / "m")
    monkeypatch.setenv("PATHXAI_TRUST_CODE", "1")
    pruned, out = _prune_and_save(original, tmp_path / "m", tmp_path / "p", "weight")
    monkeypatch.delenv("PATHXAI_TRUST_CODE")
    with pytest.raises(ModelError, match="PATHXAI_TRUST_CODE=1"):
        load_model(out)
    monkeypatch.setenv("PATHXAI_TRUST_CODE", "1")
    loaded, card = load_model_with_card(out)
    assert card.trust_code is True and card.arch == "python:tests.byom.factories:resnet18"
    assert sum(p.numel() for p in loaded.parameters()) < sum(p.numel() for p in original.parameters())
    np.testing.assert_allclose(_logits(loaded), _logits(pruned), rtol=1e-5, atol=1e-5)


def test_prune_refuses_lrp_where_it_has_no_rules_and_prunes_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A LayerNorm model (as ConvNeXt): the lrp criterion and drift stop before any work, naming the layer;
    a data-free criterion without drift prunes it."""
    from tests.byom.factories import layernorm_cnn

    monkeypatch.setenv("PATHXAI_TRUST_CODE", "1")
    torch.manual_seed(0)
    torch.save(layernorm_cnn().state_dict(), tmp_path / "w.pt")
    arch = [
        "--arch",
        "python:tests.byom.factories:layernorm_cnn",
        "--trust-code",
        "--weights",
        str(tmp_path / "w.pt"),
    ]
    model_dir = tmp_path / "m"
    args = ["--classes", "normal,tumour", "--mpp", "1", "--size", "64", "--out", str(model_dir)]
    assert main(["model", "import", *arch, *args]) == 0
    manifest = _cohort(tmp_path / "cohort")
    common = ["prune", "--model", str(model_dir), "--manifest", str(manifest), "--ratio", "0.5", "--quiet"]
    capsys.readouterr()
    code = main([*common, "--criterion", "lrp", "--no-latency", "--out", str(tmp_path / "p_lrp")])
    err = capsys.readouterr().err
    assert code != 0 and not (tmp_path / "p_lrp").exists()
    assert (
        "'lrp' criterion and the heatmap drift" in err and "LayerNorm2d" in err and "--drift-patches 0" in err
    )
    out = tmp_path / "p_weight"
    code = main([*common, "--criterion", "weight", "--drift-patches", "0", "--no-latency", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    pruned = load_model(out)
    assert [m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)] == [4, 8]
    assert pruned[1].normalized_shape == (4,)
