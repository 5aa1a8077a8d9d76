"""A longer fuzz campaign against pathxai's parsers (the CI runs only the bounded property tests).

Two engines:

* ``atheris`` (coverage-guided libFuzzer, ``pip install atheris``): one process per target, for
  ``--seconds`` each, instrumenting ``pathxai``; any exception other than the target's domain
  error is a crash (libFuzzer writes the input to ``crash-*`` in ``--artifacts``).
* ``hypothesis``: the strategies of ``tests/robustness/test_properties.py`` with ``--examples``
  examples per property.

Targets: ``manifest`` (CSV bytes -> ``read_manifest`` + ``validate``), ``card`` (JSON bytes ->
``ModelCard.from_json``), ``coords`` (bytes as an HDF5 coordinates file -> ``read_coords``),
``geojson`` (bytes -> ``pathxai.export.geojson.read_geojson``, when that module exists).

Usage::

    python benchmarks/fuzz_campaign.py --engine atheris --seconds 120
    python benchmarks/fuzz_campaign.py --engine hypothesis --examples 5000

Results (per target: executions, seconds, crashes) are printed as JSON lines and, with
``--out FILE``, appended there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("manifest", "card", "coords", "geojson")

SEEDS = {
    "manifest": [
        b"id,path,label,patient,sha256\na,a.png,benign,p1,\nb,b.png,malignant,p2," + b"ab" * 32 + b"\n",
        b"path,tumor,mpp,split\nx/y.png,1,0.5,train\n../z.png,0,nan,test\n",
    ],
    "card": [
        json.dumps(
            {
                "arch": "compact_cnn",
                "classes": ["non-tumour", "tumour"],
                "tumour_index": 1,
                "input_size": 112,
                "mpp": 1.24,
                "mean": [0.7, 0.5, 0.7],
                "std": [0.15, 0.2, 0.15],
                "weights_sha256": "ab" * 32,
                "channel_plan": {"features.0": [0, 1, 2]},
            }
        ).encode()
    ],
    "coords": [b"\x89HDF\r\n\x1a\n" + b"\x00" * 64],
    "geojson": [
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]]]},
                        "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}},
                    }
                ],
            }
        ).encode()
    ],
}


def _target(name: str) -> Callable[[bytes], None]:
    """Build the fuzz function of one target (imports happen here, under instrumentation)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    if name == "manifest":
        from pathxai.errors import ManifestError
        from pathxai.manifest import read_manifest, validate

        def run(data: bytes) -> None:
            p = workdir / "m.csv"
            p.write_bytes(data)
            try:
                read_manifest(p)
            except ManifestError:
                pass
            validate(p, workdir)

        return run
    if name == "card":
        from pathxai.errors import ModelError
        from pathxai.model.card import ModelCard

        def run(data: bytes) -> None:
            try:
                card = ModelCard.from_json(data)
            except ModelError:
                return
            assert ModelCard.from_json(card.to_json()) == card

        return run
    if name == "coords":
        from pathxai.errors import StoreError
        from pathxai.store import read_coords

        def run(data: bytes) -> None:
            p = workdir / "c.h5"
            p.write_bytes(data)
            try:
                read_coords(p)
            except StoreError:
                pass

        return run
    if name == "geojson":
        from pathxai.errors import PathXAIError
        from pathxai.export.geojson import read_geojson

        def run(data: bytes) -> None:
            p = workdir / "g.geojson"
            p.write_bytes(data)
            try:
                read_geojson(p)
            except PathXAIError:
                pass

        return run
    raise SystemExit(f"unknown target {name!r}")


def _atheris_child(name: str, seconds: int, artifacts: Path) -> None:
    import atheris

    with atheris.instrument_imports(include=["pathxai"]):
        fn = _target(name)
    corpus = Path(tempfile.mkdtemp(prefix=f"corpus-{name}-"))
    for i, seed in enumerate(SEEDS[name]):
        (corpus / f"seed{i}").write_bytes(seed)
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-artifact_prefix={artifacts}/{name}-",
        "-print_final_stats=1",
        "-max_len=4096",
        "-rss_limit_mb=2048",
        str(corpus),
    ]
    atheris.Setup(argv, fn)
    atheris.Fuzz()


def run_atheris(name: str, seconds: int, artifacts: Path) -> dict[str, object]:
    """Fuzz one target in a child process; parse libFuzzer's final stats."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name, "--seconds", str(seconds), "--artifacts", str(artifacts)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    log = proc.stderr
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    cov = re.findall(r"cov: (\d+)", log)
    crashes = sorted(p.name for p in artifacts.glob(f"{name}-crash-*"))
    tail = "" if proc.returncode == 0 else "\n".join(log.splitlines()[-25:])
    return {
        "engine": "atheris",
        "target": name,
        "seconds": round(time.perf_counter() - t0, 1),
        "executions": int(runs.group(1)) if runs else None,
        "coverage_edges": int(cov[-1]) if cov else None,
        "exit": proc.returncode,
        "crashes": crashes,
        "crash_log": tail,
    }


def run_hypothesis(examples: int) -> list[dict[str, object]]:
    """Run the property tests' strategies with many examples."""
    import importlib.util

    from hypothesis import HealthCheck, given, settings

    spec = importlib.util.spec_from_file_location("props", REPO / "tests/robustness/test_properties.py")
    assert spec and spec.loader
    props = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(props)
    cfg = settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-hyp-"))
    cases = {
        "manifest-bytes": (
            props.st.binary(max_size=2000),
            lambda raw: props.check_manifest_bytes(raw, workdir),
        ),
        "manifest-tables": (props.csv_tables(), lambda raw: props.check_manifest_bytes(raw, workdir)),
        "card-json": (props.card_dicts(), props.check_card_data),
    }
    for name, (strategy, check) in cases.items():
        t0 = time.perf_counter()
        count = {"n": 0}

        def make_body(check: Callable[[Any], object], count: dict[str, int]) -> Callable[[Any], None]:
            def one(x: Any) -> None:
                count["n"] += 1
                check(x)

            return one

        body = make_body(check, count)
        error = ""
        try:
            cfg(given(strategy)(body))()
        except Exception as exc:  # a falsifying example: report it
            error = f"{type(exc).__name__}: {exc}"[:2000]
        results.append(
            {
                "engine": "hypothesis",
                "target": name,
                "examples": count["n"],
                "seconds": round(time.perf_counter() - t0, 1),
                "failure": error,
            }
        )
    for name in ("test_grid_inside_slide_for_any_resolution", "test_coords_store_round_trip"):
        t0 = time.perf_counter()
        fn = getattr(props, name)
        inner = fn.hypothesis.inner_test
        error = ""
        try:
            cfg(given(**fn.hypothesis._given_kwargs)(inner))()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
        results.append(
            {"engine": "hypothesis", "target": name, "examples": examples, "seconds": round(time.perf_counter() - t0, 1),
             "failure": error}
        )  # fmt: skip
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=("atheris", "hypothesis"), default="atheris")
    ap.add_argument("--targets", nargs="*", default=list(TARGETS))
    ap.add_argument("--seconds", type=int, default=60, help="atheris: seconds per target")
    ap.add_argument("--examples", type=int, default=2000, help="hypothesis: examples per property")
    ap.add_argument("--artifacts", type=Path, default=Path(tempfile.gettempdir()) / "pathxai-fuzz")
    ap.add_argument("--out", type=Path, default=None, help="append JSON lines here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _atheris_child(args.child, args.seconds, args.artifacts)
        return 0
    if args.engine == "atheris":
        results = []
        for t in args.targets:
            if t == "geojson" and not (REPO / "pathxai/export/geojson.py").is_file():
                continue
            results.append(run_atheris(t, args.seconds, args.artifacts))
    else:
        results = run_hypothesis(args.examples)
    bad = 0
    for r in results:
        line = json.dumps(r)
        print(line)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(line + "\n")
        bad += bool(r.get("crashes") or r.get("failure") or r.get("exit", 0) not in (0,))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
