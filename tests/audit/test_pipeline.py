"""``pathxai audit`` end to end on a few real GlaS images: files, schema, self-contained HTML, cache, errors."""

import csv
import json
import re
from pathlib import Path

import pytest

from pathxai.cli import main
from pathxai.model import save_model
from tests.audit.conftest import REPO

FAST = {"settings": {"permutations": 20, "bootstrap": 200, "sensitivity_images": 4}}


def _write_manifest(path: Path, ids: set[str], drop_mpp: bool = False) -> Path:
    with open(REPO / "data_manifests" / "glas.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["id"] in ids]
        cols = list(rows[0])
    if drop_mpp:
        cols.remove("mpp")
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def audit_run(tmp_path_factory, glas_dir, glas_subset, pen_cohort):
    tmp = tmp_path_factory.mktemp("audit")
    recs, _ = glas_subset
    ids = {r.id for r in recs[:5]} | {r.id for r in recs[20:25]}
    manifest = _write_manifest(tmp / "m.csv", ids)
    model = save_model(pen_cohort["net"], pen_cohort["card"], tmp / "model")
    cfg = tmp / "th.json"
    cfg.write_text(json.dumps(FAST))
    out = tmp / "out"
    args = ["audit", "--manifest", str(manifest), "--data-root", str(glas_dir), "--model", str(model)]
    args += ["--config", str(cfg), "--out", str(out), "--quiet"]
    assert main(args) == 0
    return {"out": out, "args": args, "ids": ids, "tmp": tmp, "manifest": manifest, "model": model}


@pytest.mark.real_data
def test_report_json_schema(audit_run):
    d = json.loads((audit_run["out"] / "report.json").read_text())
    assert d["schema"] == "pathxai.audit/1"
    assert d["cohort"]["kind"] == "image" and d["cohort"]["n_items"] == 10
    assert d["thresholds"]["settings"]["permutations"] == 20
    families = {f["family"] for f in d["findings"]}
    assert families == {"dataset", "class-correlated", "sampling"}
    for f in d["findings"]:
        assert set(f) >= {"family", "check", "metric", "value", "threshold", "severity", "evidence"}
        assert f["severity"] in ("info", "low", "medium", "high")
        assert set(f["evidence"]) >= {"items", "regions", "thumbnails"}
        assert set(f["evidence"]["items"]) <= audit_run["ids"]
    checks = {f["check"] for f in d["findings"]}
    assert {"stain.outliers", "stain.sensitivity", "labels.annotation", "sampling.leakage"} <= checks
    # GlaS gland masks are declared as what they are
    assert any("not tumour masks" in n for n in d["notes"]) or any(
        "not tumour" in f["metric"] for f in d["findings"] if f["check"] == "labels.annotation"
    )


@pytest.mark.real_data
def test_html_is_self_contained(audit_run):
    html = (audit_run["out"] / "report.html").read_text()
    srcs = re.findall(r"""src=['"]([^'"]+)""", html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in html and "https://" not in html
    for fig in ("stain_scatter", "artifacts", "counts"):
        assert f"alt='{fig}'" in html
    assert "Thresholds in force" in html


@pytest.mark.real_data
def test_geojson_and_no_partial_files(audit_run):
    out = audit_run["out"]
    gj = json.loads((out / "findings.geojson").read_text())
    assert gj["type"] == "FeatureCollection"
    for f in gj["features"]:
        ring = f["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) == 5
        assert f["properties"]["image"] in audit_run["ids"]
    assert not list(out.rglob("*.part*"))
    assert len(list((out / "cache").glob("*.npz"))) == 10


@pytest.mark.real_data
def test_rerun_uses_the_cache(audit_run):
    out = audit_run["out"]
    before = json.loads((out / "report.json").read_text())
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*.npz")}
    assert main(audit_run["args"]) == 0
    after = json.loads((out / "report.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    key = lambda d: [(f["check"], f["value"], f["severity"]) for f in d["findings"]]  # noqa: E731
    assert key(before) == key(after)


@pytest.mark.real_data
def test_domain_errors_are_one_line(audit_run, capsys, glas_dir):
    tmp = audit_run["tmp"]
    base = ["audit", "--data-root", str(glas_dir), "--model", "none", "--out", str(tmp / "e"), "--quiet"]
    assert main([*base, "--manifest", str(tmp / "missing.csv")]) == 2
    assert "manifest file not found" in capsys.readouterr().err
    bad = tmp / "bad.json"
    bad.write_text('{"rules": {"no.such.check": {}}}')
    assert main([*base, "--manifest", str(audit_run["manifest"]), "--config", str(bad)]) == 2
    assert "unknown check" in capsys.readouterr().err
    nompp = _write_manifest(tmp / "nompp.csv", audit_run["ids"], drop_mpp=True)
    assert main([*base, "--manifest", str(nompp)]) == 2
    assert "no 'mpp'" in capsys.readouterr().err
