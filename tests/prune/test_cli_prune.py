"""``pathxai prune`` / ``prune-sweep`` end to end on a few real GlaS images with a tiny model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from pathxai.cli import main
from pathxai.model import ModelCard, build_model, load_model_with_card, save_model

REPO = Path(__file__).resolve().parents[2]
TEST_PATIENTS = ["glas_p01", "glas_p10"]


@pytest.fixture
def tiny_setup(glas_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    rows = list(csv.DictReader((REPO / "data_manifests" / "glas.csv").open()))
    picked = []
    for patient_set in (TEST_PATIENTS, None):
        for tumour in ("0", "1"):
            sel = [
                r
                for r in rows
                if r["tumor"] == tumour and ((r["patient"] in TEST_PATIENTS) == (patient_set is not None))
            ]
            picked += sel[:2]
    manifest = tmp_path / "tiny.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(picked)
    torch.manual_seed(0)
    model = build_model("compact_cnn", widths=[8, 16, 16, 16]).eval()
    card = ModelCard(
        arch="compact_cnn",
        classes=("non-tumour", "tumour"),
        tumour_index=1,
        input_size=64,
        mpp=2.5,
        mean=(0.78, 0.55, 0.75),
        std=(0.15, 0.2, 0.13),
        arch_kwargs={"widths": [8, 16, 16, 16]},
        training={"test_patients": TEST_PATIENTS, "patches": {"size": 64, "stride": 32, "min_tissue": 0.3}},
    )
    save_model(model, card, tmp_path / "model")
    return manifest, tmp_path / "model"


def test_prune_cli_writes_a_loadable_smaller_model(
    tiny_setup, glas_dir: Path, tmp_path: Path, capsys
) -> None:
    manifest, model_dir = tiny_setup
    out = tmp_path / "pruned"
    code = main(
        [
            "prune", "--model", str(model_dir), "--manifest", str(manifest), "--data-root", str(glas_dir),
            "--criterion", "lrp", "--ratio", "0.5", "--reference-per-class", "3", "--drift-patches", "4",
            "--no-latency", "--quiet", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    pruned, card = load_model_with_card(out)
    assert card.channel_plan and {len(v) for v in card.channel_plan.values()} == {4, 8}
    report = json.loads((out / "pruning.json").read_text())
    plan = report["plan"]
    assert plan["n_reference"] == 6 and plan["criterion"] == "lrp"
    assert plan["metrics_after"]["params"] == sum(p.numel() for p in pruned.parameters())
    assert plan["metrics_after"]["params"] < plan["metrics_before"]["params"]
    assert 0 <= plan["metrics_after"]["auc"] <= 1
    assert report["drift"]["n"] == 4 and -1 <= report["drift"]["pearson"] <= 1
    assert report["heldout_patients"] == TEST_PATIENTS
    assert not set(report["reference_patients"]) & set(TEST_PATIENTS)
    assert "held-out auc" in capsys.readouterr().out


def test_prune_sweep_cli_writes_csv_and_plot_and_resumes(tiny_setup, glas_dir: Path, tmp_path: Path) -> None:
    manifest, model_dir = tiny_setup
    args = [
        "prune-sweep", "--model", str(model_dir), "--manifest", str(manifest), "--data-root", str(glas_dir),
        "--criteria", "weight,random", "--ratios", "0.25,0.5", "--seeds", "0,1", "--drift-patches", "0",
        "--finetune-epochs", "1", "--finetune-steps-per-epoch", "1", "--finetune-ratios", "0.5",
        "--quiet", "--out", str(tmp_path / "sweep"),
    ]  # fmt: skip
    assert main(args) == 0
    rows = list(csv.DictReader((tmp_path / "sweep" / "sweep.csv").open()))
    assert len(rows) == 1 + 3 + 2 * 3  # baseline + weight (seed 0 only: deterministic) + random x 2 seeds
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 1000
    mtime = (tmp_path / "sweep" / "sweep.csv").read_text()
    assert main(args) == 0  # resumes: nothing left to do, same rows
    assert (tmp_path / "sweep" / "sweep.csv").read_text() == mtime


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ratio", "1.0"], "[0, 1)"),
        (["--ratio", "-0.2"], "[0, 1)"),
        (["--ratio", "0.5", "--criterion", "x"], "x"),
    ],
)
def test_prune_cli_rejects_bad_arguments(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["prune", "--manifest", "m.csv", "--out", str(tmp_path / "o"), *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_prune_cli_reports_a_missing_model_in_one_line(tmp_path: Path, capsys) -> None:
    code = main(["prune", "--model", str(tmp_path / "none"), "--manifest", "m.csv", "--ratio", "0.3",
                 "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pathxai prune: error:") and "model not found" in err and len(err.splitlines()) == 1


def test_prune_sweep_pxp_writes_areas_for_every_criterion_and_seed(
    tiny_setup, glas_dir: Path, tmp_path: Path, capsys
) -> None:
    manifest, model_dir = tiny_setup
    _, card = load_model_with_card(model_dir)
    narrow = build_model("compact_cnn", widths=[2, 4, 4, 4]).eval()  # 50 % is the largest feasible rate
    card = ModelCard.from_dict({**card.to_dict(), "arch_kwargs": {"widths": [2, 4, 4, 4]}})
    save_model(narrow, card, tmp_path / "narrow")
    out = tmp_path / "pxp"
    args = [
        "prune-sweep", "--pxp", "--model", str(tmp_path / "narrow"), "--manifest", str(manifest),
        "--data-root", str(glas_dir), "--criteria", "weight,random", "--seeds", "0,1",
        "--reference-per-class", "2", "--quiet", "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    ratios = sorted({float(r["ratio"]) for r in rows if r["criterion"] != "none"})
    assert ratios == pytest.approx([0.05 * i for i in range(1, 11)])
    assert all(r["drift_pearson"] == "" and r["finetune_epochs"] == "0" for r in rows)
    assert {r["variant"] for r in rows if r["criterion"] != "none"} == {"bn-shift8/local/raw/abs"}
    areas = list(csv.DictReader((out / "pxp.csv").open()))
    assert [(a["criterion"], a["seed"]) for a in areas] == [("random", "0"), ("random", "1"), ("weight", "0")]
    assert all(0 <= float(a["area"]) <= 1 and a["n_rates"] == "11" for a in areas)
    assert (out / "pxp.png").stat().st_size > 1000
    assert "PxP area random" in capsys.readouterr().out


def test_fit_patterns_cli_stores_patterns_beside_the_model(tiny_setup, glas_dir: Path, capsys) -> None:
    from pathxai.explain import Explainer
    from pathxai.explain.patterns import load_patterns

    manifest, model_dir = tiny_setup
    args = [
        "fit-patterns", "--model", str(model_dir), "--manifest", str(manifest), "--data-root", str(glas_dir),
        "--reference-per-class", "2", "--tiles-per-image", "2", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    patterns = load_patterns(model_dir)
    model, _ = load_model_with_card(model_dir)
    conv_weights = {n: m.weight.shape for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert conv_weights and all(patterns[n].shape == s for n, s in conv_weights.items())
    with Explainer(model, "pattern_attribution", patterns=model_dir) as explainer:
        result = explainer(torch.randn(2, 3, 64, 64))
    assert result.relevance.shape == (2, 64, 64) and float(abs(result.relevance).max()) > 0
