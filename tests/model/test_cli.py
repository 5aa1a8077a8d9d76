from __future__ import annotations

import json
from pathlib import Path

import pytest

from pathxai.cli import main
from pathxai.model import load_model_with_card


def test_train_then_evaluate_end_to_end(tiny_glas_manifest: Path, glas_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    common = ["--manifest", str(tiny_glas_manifest), "--data-root", str(glas_dir)]
    rc = main(
        [
            "train",
            *common,
            "--out",
            str(out),
            "--epochs",
            "1",
            "--max-steps-per-epoch",
            "2",
            "--batch-size",
            "8",
            "--mpp",
            "2.48",
            "--size",
            "48",
            "--stride",
            "48",
            "--arch-kwargs",
            '{"widths": [8, 16, 16, 32, 32]}',
            "--quiet",
        ]
    )
    assert rc == 0
    _model, card = load_model_with_card(out)
    assert card.input_size == 48 and card.mpp == 2.48
    assert card.training["test_patients"] and set(card.training["test_patients"]).isdisjoint(
        card.training["train_patients"]
    )
    assert card.training["manifest_sha256"]
    assert card.command.startswith("pathxai train")
    assert card.arch_kwargs["widths"] == [8, 16, 16, 32, 32]
    assert "test" in card.metrics
    ev = tmp_path / "eval.json"
    assert (
        main(["evaluate", *common, "--model", str(out), "--out", str(ev), "--split", "test", "--quiet"]) == 0
    )
    r = json.loads(ev.read_text())
    for key in (
        "auc",
        "accuracy",
        "balanced_accuracy",
        "n",
        "confusion_matrix",
        "image_level",
        "per_patient",
    ):
        assert key in r
    assert r["image_level"]["n"] == 2
    assert r["patients_seen_in_training"] == []
    # resuming a finished run does not retrain (model unchanged)
    before = (out / "model.safetensors").read_bytes()
    assert (
        main(
            [
                "train",
                *common,
                "--out",
                str(out),
                "--epochs",
                "1",
                "--max-steps-per-epoch",
                "2",
                "--batch-size",
                "8",
                "--mpp",
                "2.48",
                "--size",
                "48",
                "--stride",
                "48",
                "--arch-kwargs",
                '{"widths": [8, 16, 16, 32, 32]}',
                "--quiet",
                "--resume",
            ]
        )
        == 0
    )
    assert (out / "model.safetensors").read_bytes() == before


def test_domain_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("path,tumor\nx.png,1\n")
    rc = main(
        [
            "evaluate",
            "--manifest",
            str(bad),
            "--model",
            str(tmp_path / "nomodel"),
            "--out",
            str(tmp_path / "e.json"),
        ]
    )
    assert rc == 2
    assert "model not found" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()
