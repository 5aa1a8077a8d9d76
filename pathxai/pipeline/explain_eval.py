"""``pathxai explain-eval``: which heatmap to trust, measured on a labelled manifest.

The job reads the manifest and the model, streams patches (:mod:`pathxai.explain.eval_patches`) through
the evaluator (:class:`pathxai.explain.evaluation.ExplanationEvaluator`) in batches and writes
``explain_eval.json`` and ``explain_eval.html`` (:mod:`pathxai.explain.eval_report`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pathxai.errors import ManifestError
from pathxai.explain.eval_patches import PatchSample, eval_batch, mask_meaning, stream_patches
from pathxai.explain.eval_report import write_html
from pathxai.explain.evaluation import ExplanationEvaluator, MethodSpec
from pathxai.explain.methods import method_names
from pathxai.jsonio import write_json
from pathxai.manifest import Manifest, ManifestRecord, read_manifest
from pathxai.model.card import ModelCard
from pathxai.model.io import load_model_with_card

__all__ = ["ExplainEvalResult", "explain_eval"]


@dataclass(frozen=True)
class ExplainEvalResult:
    """What ``explain-eval`` wrote: the two files and the JSON document itself."""

    json_path: Path
    html_path: Path
    summary: dict[str, Any]


def _run_batches(
    evaluator: ExplanationEvaluator,
    stream: Iterable[PatchSample],
    card: ModelCard,
    *,
    batch_size: int,
    seed: int,
    progress: bool,
) -> None:
    """Feed ``stream`` to ``evaluator`` in batches of ``batch_size`` (the last one may be smaller)."""
    rng = np.random.default_rng(seed + 1)
    pending: list[PatchSample] = []
    for sample in stream:
        pending.append(sample)
        if len(pending) == batch_size:
            evaluator.update(eval_batch(pending, card, rng))
            pending = []
            if progress:
                print(f"explain-eval: {evaluator.n_patches} patches", flush=True)
    if pending:
        evaluator.update(eval_batch(pending, card, rng))


def _labelled_rows(manifest: Manifest, split: str | None) -> list[ManifestRecord]:
    """The rows of ``split`` (all rows when ``None``); every one must carry a tumour label."""
    records = [r for r in manifest.records if split is None or r.split == split]
    if not records:
        raise ManifestError(f"no rows with split {split!r}", path=manifest.path)
    unlabelled = [r for r in records if r.tumour is None]
    if unlabelled:
        raise ManifestError(f"line {unlabelled[0].line}: row without a tumour label", path=manifest.path)
    return records


def _settings(
    card: ModelCard,
    max_patches: int,
    per_image: int | None,
    min_tissue: float,
    steps: int,
    region: int,
    randomisation_patches: int,
    seed: int,
) -> dict[str, Any]:
    """The evaluation's settings as recorded in the provenance."""
    return {
        "mpp": card.mpp,
        "size": card.input_size,
        "max_patches": max_patches,
        "per_image": per_image,
        "min_tissue": min_tissue,
        "steps": steps,
        "region": region,
        "baseline": "blur (Gaussian, sigma 4 px)",
        "score": "probability of the explained (labelled) class",
        "randomisation_patches": randomisation_patches,
        "seed": seed,
    }


def _provenance(
    model: str | Path,
    card: ModelCard,
    manifest: Manifest,
    split: str | None,
    settings: dict[str, Any],
    start: float,
    load_before: float,
) -> dict[str, Any]:
    """Where the numbers come from: model, manifest, settings, time and machine load."""
    return {
        "model": str(model),
        "arch": card.arch,
        "weights_sha256": card.weights_sha256,
        "manifest": str(manifest.path),
        "manifest_sha256": manifest.sha256,
        "split": split,
        "mask_meaning": mask_meaning(manifest),
        "settings": settings,
        "seconds": round(time.perf_counter() - start, 1),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def explain_eval(
    manifest: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    data_root: str | Path | None = None,
    methods: Sequence[str] | None = None,
    max_patches: int = 64,
    per_image: int | None = None,
    split: str | None = None,
    batch_size: int = 16,
    steps: int = 16,
    region: int = 8,
    randomisation_patches: int = 16,
    min_tissue: float = 0.5,
    native_mpp: float | None = None,
    seed: int = 0,
    progress: bool = True,
) -> ExplainEvalResult:
    """Evaluate explanation methods on a manifest's patches; write ``explain_eval.json`` and ``.html``.

    Parameters
    ----------
    manifest, model, out
        Labelled manifest, ``"default"`` or a model directory, output directory.
    data_root
        Root of the manifest's paths (default: the manifest's directory).
    methods
        Method specs (``name`` or ``name:key=value``); default every registered method.
    max_patches, per_image, split, min_tissue, native_mpp
        Which patches: at most ``max_patches`` (``per_image`` per image), only rows of ``split``.
    batch_size
        Patches per streamed batch.
    steps, region
        Region perturbation steps and region side (pixels).
    randomisation_patches
        Patches on which cascading randomisation runs.
    seed
        Seed of the patch choice, stain jitter, random orders and bootstrap.
    progress
        Print one line per batch.

    Returns
    -------
    ExplainEvalResult
        The paths written and the JSON document.
    """
    m = read_manifest(manifest)
    root = Path(data_root) if data_root is not None else m.path.parent
    records = _labelled_rows(m, split)
    specs = [MethodSpec.parse(s) for s in (methods or method_names())]
    net, card = load_model_with_card(model)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    stream = stream_patches(
        records,
        root,
        card,
        max_patches=max_patches,
        per_image=per_image,
        min_tissue=min_tissue,
        native_mpp=native_mpp,
        seed=seed,
    )
    with ExplanationEvaluator(
        net, specs, steps=steps, region=region, randomisation_patches=randomisation_patches, seed=seed
    ) as evaluator:
        _run_batches(evaluator, stream, card, batch_size=batch_size, seed=seed, progress=progress)
        if evaluator.n_patches == 0:
            raise ManifestError("no patches with enough tissue", path=m.path, hint="lower --min-tissue")
        result = evaluator.summary()
    settings = _settings(card, max_patches, per_image, min_tissue, steps, region, randomisation_patches, seed)
    result["provenance"] = _provenance(model, card, m, split, settings, start, load_before)
    json_path, html_path = out_dir / "explain_eval.json", out_dir / "explain_eval.html"
    write_json(json_path, result)
    write_html(html_path, result)
    return ExplainEvalResult(json_path=json_path, html_path=html_path, summary=result)
