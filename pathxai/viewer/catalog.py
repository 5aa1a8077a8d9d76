"""What a viewer output directory holds: heatmap stores (with their slides), audit reports, models.

The viewer opens a directory written by ``pathxai demo`` or a batch run. It finds, without
following symlinks and at most a few folders deep:

- complete heatmap stores ``*.h5`` (``*.partial.h5`` and other HDF5 files are skipped with a reason);
- audit reports ``report.json`` (with a top-level ``findings`` list);
- model directories (``model_card.json``), with ``pruning.json`` beside a pruned one and
  ``mitigation.json`` beside a mitigated one (``pathxai mitigate``).

An optional ``pathxai-view.json`` in the directory lists extra slide roots
(``{"slide_roots": ["/data/slides"]}``, relative entries are relative to the directory).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathxai.errors import PathXAIError
from pathxai.store import HeatmapStore
from pathxai.viewer.paths import Roots, file_version

VIEW_CONFIG = "pathxai-view.json"
MAX_DEPTH = 4
MAX_FILES = 5000


@dataclass(frozen=True)
class SlideEntry:
    """A heatmap store and where its slide is (``slide_loc`` is ``None`` when outside every root)."""

    slide_id: str
    store_rel: str
    slide_path: str
    slide_loc: tuple[int, str] | None
    attrs: dict[str, Any]
    #: Changes when the store file is replaced (:func:`pathxai.viewer.paths.file_version`); overlay
    #: tile URLs carry it, so neither the server nor a browser cache serves a replaced store's tiles.
    store_version: str = ""


@dataclass(frozen=True)
class ModelEntry:
    """A model directory under the output directory (``pruning_rel``/``mitigation_rel`` set for a pruned/mitigated model)."""

    rel: str
    pruning_rel: str | None
    mitigation_rel: str | None = None


@dataclass
class Catalog:
    """Everything the viewer can show from one output directory."""

    roots: Roots
    slides: list[SlideEntry] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    models: list[ModelEntry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def slide(self, slide_id: str) -> SlideEntry:
        """The entry of ``slide_id``.

        Raises
        ------
        KeyError
            For an unknown id.
        """
        for s in self.slides:
            if s.slide_id == slide_id:
                return s
        raise KeyError(slide_id)


def config_slide_roots(out: Path) -> list[Path]:
    """Slide roots listed in ``out/pathxai-view.json`` (an unreadable file is ignored)."""
    cfg = out / VIEW_CONFIG
    try:
        raw = json.loads(cfg.read_text(encoding="utf-8")) if cfg.is_file() else {}
    except (OSError, ValueError):
        return []
    roots = raw.get("slide_roots", []) if isinstance(raw, dict) else []
    return [(out / r) if not Path(r).is_absolute() else Path(r) for r in roots if isinstance(r, str)]


def make_roots(out: str | Path, slide_roots: list[str | Path] | None = None) -> Roots:
    """The viewer's roots: ``out``, the given slide roots and those of ``out/pathxai-view.json``."""
    out_p = Path(out).expanduser().resolve()
    return Roots.make(out_p, [*(slide_roots or []), *config_slide_roots(out_p)])


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "node_modules")
        if len(here.parts) - base_depth >= MAX_DEPTH:
            dirnames[:] = []
        for name in sorted(filenames):
            p = here / name
            if not p.is_symlink():
                found.append(p)
            if len(found) >= MAX_FILES:
                return found
    return found


def _slide_candidates(slide: str, out: Path) -> list[Path]:
    p = Path(slide).expanduser()
    return [p] if p.is_absolute() else [Path.cwd() / p, out / p]


def scan(roots: Roots) -> Catalog:
    """Find stores, reports and models under ``roots.out``."""
    cat = Catalog(roots)
    for path in _walk(roots.out):
        rel = path.relative_to(roots.out).as_posix()
        name = path.name
        if name.endswith(".h5") and not name.endswith(".partial.h5"):
            try:
                version = file_version(path)
                with HeatmapStore.open(path) as store:
                    attrs = store.attrs
            except OSError as exc:  # replaced or removed while scanning
                cat.skipped.append(f"{rel}: {exc}")
                continue
            except PathXAIError as exc:
                if "pathxai.coords/" not in str(exc):  # tile coordinate files are expected, not errors
                    cat.skipped.append(f"{rel}: {exc}")
                continue
            if attrs.get("status") != "complete":
                cat.skipped.append(f"{rel}: store is not complete (status {attrs.get('status')!r})")
                continue
            slide = str(attrs.get("slide", ""))
            loc = None
            for cand in _slide_candidates(slide, roots.out) if slide else []:
                loc = roots.locate_slide(cand)
                if loc:
                    break
            sid = str(attrs.get("slide_id") or path.stem)
            cat.slides.append(SlideEntry(sid, rel, slide, loc, attrs, version))
        elif name.endswith(".partial.h5"):
            cat.skipped.append(f"{rel}: unfinished run (partial store)")
        elif name == "report.json":
            cat.reports.append(rel)
        elif name == "model_card.json":
            d = path.parent
            pruning, mitigation = d / "pruning.json", d / "mitigation.json"
            cat.models.append(
                ModelEntry(
                    d.relative_to(roots.out).as_posix() or ".",
                    pruning.relative_to(roots.out).as_posix() if pruning.is_file() else None,
                    mitigation.relative_to(roots.out).as_posix() if mitigation.is_file() else None,
                )
            )
    return cat


def read_json(roots: Roots, rel: str) -> Any:
    """Read a JSON file under the output directory (confined; never anything but JSON)."""
    path = roots.out_file(rel)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PathXAIError(f"cannot read JSON: {exc}", path=path) from None
