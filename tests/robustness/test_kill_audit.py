"""Crash safety of ``pathxai audit``: SIGKILL while it caches heatmaps and while it writes the report.

After every kill each report file present parses (JSON, GeoJSON) or is a complete HTML document,
and every cached heatmap loads without pickle; the rerun completes with the same findings as an
uninterrupted audit. Two audits on one output directory cannot interleave (lock).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(__file__).resolve().parents[2] / "pathxai/cli/audit.py").is_file(),
        reason="audit CLI not landed",
    ),
]

from .conftest import assert_clean_failure, run_cli, save_tiny_model  # noqa: E402

N_IMAGES = 6


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("audit_cohort")
    rng = np.random.default_rng(0)
    rows = ["id,path,label,patient,site,mpp"]
    for i in range(N_IMAGES):
        img = np.full((192, 256, 3), 235, np.uint8)
        img[30:170, 30:230] = rng.integers(0, 60, (140, 200, 3)) + np.array(
            [110 + 20 * (i % 2), 50, 140], np.uint8
        )
        Image.fromarray(img).save(d / f"i{i}.png")
        rows.append(f"i{i},i{i}.png,{'malignant' if i % 2 else 'benign'},p{i // 2},s{i % 3},1.0")
    (d / "m.csv").write_text("\n".join(rows) + "\n")
    model = save_tiny_model(d / "model")
    return d / "m.csv", model


def _argv(cohort: tuple[Path, Path], out: Path) -> list[str]:
    return [sys.executable, "-m", "pathxai", "audit", "--manifest", str(cohort[0]), "--model", str(cohort[1]),
            "--out", str(out), "--quiet"]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _findings(out: Path) -> list[tuple[object, ...]]:
    rep = json.loads((out / "report.json").read_text())
    return sorted(
        (
            f["family"],
            f["check"],
            f["metric"],
            None if f["value"] is None else round(f["value"], 6),
            f["severity"],
        )
        for f in rep["findings"]
    )


def _assert_readable(out: Path) -> dict[str, int]:
    seen = {"cache": 0, "report": 0}
    for p in out.rglob("*"):
        if not p.is_file() or p.name.startswith(".") or ".part" in p.name:
            continue
        if p.suffix in (".json", ".geojson"):
            json.loads(p.read_text())
            seen["report"] += 1
        elif p.suffix == ".html":
            text = p.read_text()
            assert text.rstrip().endswith("</html>"), p
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                _ = {k: z[k] for k in z.files}
            seen["cache"] += 1
    return seen


@pytest.fixture(scope="module")
def reference(cohort: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audit_ref") / "out"
    r = subprocess.run(_argv(cohort, out), capture_output=True, text=True, env=_env(), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_sigkill_audit_then_rerun(cohort: tuple[Path, Path], reference: Path, tmp_path: Path) -> None:
    rng = random.Random(3)
    out = tmp_path / "killed"
    log = []
    for stage in ("cache", "cache", "report"):
        target = rng.randint(1, N_IMAGES - 1)
        proc = subprocess.Popen(
            _argv(cohort, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
        )
        t0, hit = time.monotonic(), ""
        while not hit and proc.poll() is None and time.monotonic() - t0 < 600:
            cached = len(list((out / "cache").glob("*.npz"))) if (out / "cache").is_dir() else 0
            if stage == "cache" and cached >= target:
                hit = f"{cached} cached"
            if stage == "report" and (out / "report.json").exists():
                hit = "report.json written"
            time.sleep(0.01)
        if proc.poll() is not None:
            log.append({"stage": stage, "note": "finished before the kill"})
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.append({"stage": stage, "at": hit, **_assert_readable(out)})
    print("audit kills:", log)
    r = subprocess.run(_argv(cohort, out), capture_output=True, text=True, env=_env(), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_readable(out)
    assert _findings(out) == _findings(reference)
    assert sum("at" in e for e in log) >= 2, log


def test_two_audits_cannot_interleave(cohort: tuple[Path, Path], tmp_path: Path) -> None:
    """Another process holds the output directory (as a running audit does): the audit refuses in one line.

    (A second real audit started beside a first can lose the race on a loaded machine: by the time its
    interpreter has started, a small first audit may be over. A holder process makes the overlap certain.)
    """
    out = tmp_path / "locked"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathxai.store.lock import OutputLock\n"
         "with OutputLock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)", str(out)],
        stdout=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        r = run_cli("audit", "--manifest", cohort[0], "--model", cohort[1], "--out", out, "--quiet")
        assert_clean_failure(r, "in use", f"pid {holder.pid}")
        assert sorted(p.name for p in out.iterdir()) == [".pathxai.lock"]
    finally:
        holder.kill()
        holder.wait()
