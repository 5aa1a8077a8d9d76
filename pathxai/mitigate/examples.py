"""A few of a step's stress images rebuilt from ``mitigation.json``, and one model's view of them.

The stress test (:func:`pathxai.mitigate.measure.measure`) pastes the finding's evidence onto the
clean held-out images of the other class: recipient ``i`` gets the artifact of donor ``i mod
len(donors)`` (or the marked class's stain). :func:`stress_examples` rebuilds the first ``n`` of
those images, loading only what it needs: the recipients and, when the step records them
(``stress_images``), the donors it uses; an older ``mitigation.json`` without that record rebuilds the
evidence from all training images of the marked class, as the run did. :func:`explain_examples`
gives one model's LRP relevance and tumour probability on them (the audit's image tiling), so the
original and the mitigated model can be shown side by side on the same tiles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from pathxai.audit.artifacts import detect
from pathxai.audit.heat import heat_of_image, image_predictor
from pathxai.errors import ManifestError
from pathxai.manifest import ManifestRecord
from pathxai.mitigate.evidence import Cohort, evidence_of
from pathxai.mitigate.run import split_records
from pathxai.mitigate.select import Target
from pathxai.mitigate.stress import relevance_ratio
from pathxai.mitigate.transplant import Donor, paste, stain_transfer
from pathxai.model.card import ModelCard
from pathxai.model.datasets import load_images

__all__ = ["ExampleHeat", "StressExample", "explain_examples", "step_target", "stress_examples"]


@dataclass(frozen=True)
class StressExample:
    """One stress image: a clean held-out image of the other class with the evidence transplanted.

    Attributes
    ----------
    index
        Its position among the stress test's recipients (that of ``stress.baseline``/``stressed``).
    recipient, source
        Ids of the held-out image and of the training image the evidence comes from (``""``: a stain
        mosaic of several images).
    clean, stressed
        uint8 RGB images at the model's µm/px, without and with the evidence.
    mask
        The pixels the evidence changed.
    """

    index: int
    recipient: str
    source: str
    clean: np.ndarray
    stressed: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class ExampleHeat:
    """One model on one stress example.

    Attributes
    ----------
    relevance
        LRP relevance of the tumour class on the stressed image, ``(H, W)``.
    p_clean, p_stressed
        Tumour probability on the clean and the stressed image.
    artifact_ratio
        Share of positive relevance on the transplanted pixels over their share of the area (``None`` for a
        stain, which covers the whole image, or without positive relevance).
    """

    relevance: np.ndarray
    p_clean: float
    p_stressed: float
    artifact_ratio: float | None


def step_target(step: Mapping[str, Any]) -> Target:
    """The finding a ``mitigation.json`` step acted on, as a :class:`~pathxai.mitigate.select.Target`."""
    return Target(
        id=str(step.get("finding", "")),
        check=str(step.get("check", "")),
        severity="",
        value=None,
        kind=step.get("kind", "artifact"),
        artifact=str(step.get("artifact") or ""),
        flagged_class=int(step.get("flagged_class", 1)),
    )


def _by_id(records: Sequence[ManifestRecord], ids: Sequence[str]) -> list[ManifestRecord]:
    index = {r.id: r for r in records}
    missing = [i for i in ids if i not in index]
    if missing:
        raise ManifestError(
            f"the manifest no longer has the rows of the stress test: {', '.join(missing[:5])}",
            hint="mitigation.json was written with another manifest",
        )
    return [index[i] for i in ids]


def stress_examples(
    step: Mapping[str, Any],
    manifest: str | Path,
    data_root: str | Path,
    mpp: float,
    n: int = 4,
    train_split: str = "train",
    test_split: str = "test",
    native_mpp: float | None = None,
) -> list[StressExample]:
    """The first ``n`` stress images of a ``mitigation.json`` step, rebuilt from the manifest.

    Parameters
    ----------
    step
        A step of ``mitigation.json`` with a stress test (an artifact or a stain finding).
    manifest, data_root
        The manifest of the run and the root of its paths.
    mpp
        The model's µm/px.
    n
        How many stress images.
    train_split, test_split, native_mpp
        As given to ``pathxai mitigate``.

    Raises
    ------
    ValueError
        If the step has no stress test, or its evidence is gone.
    ManifestError
        If the manifest lacks the rows, or an image cannot be read.
    """
    target = step_target(step)
    if target.kind not in ("artifact", "stain") or "stress" not in (step.get("before") or {}):
        raise ValueError(f"{target.id or 'this step'}: no stress test (a {target.kind} finding)")
    train, test = split_records(manifest, train_split, test_split)
    other, marked = 1 - target.flagged_class, target.flagged_class
    recorded = step.get("stress_images") or {}
    recipients = [r for r in test if int(r.tumour or 0) == other]
    if recorded.get("recipients"):
        recipients = _by_id(test, [str(i) for i in recorded["recipients"]])
    recipients = recipients[:n]
    clean = load_images(recipients, data_root, mpp, native_mpp, progress=False)
    sources = [str(i) for i in recorded.get("sources") or []]
    if sources:
        pasted = _from_sources(target, train, sources, clean, data_root, mpp, native_mpp)
    else:  # an older mitigation.json: the evidence rebuilt from every image of the marked class, as the run did
        pasted = _from_cohort(target, train, marked, clean, data_root, mpp, native_mpp)
    return [
        StressExample(i, r.id, src, img, moved, mask)
        for i, (r, img, (moved, mask, src)) in enumerate(zip(recipients, clean, pasted, strict=True))
    ]


def _from_sources(
    target: Target,
    train: Sequence[ManifestRecord],
    sources: Sequence[str],
    clean: Sequence[np.ndarray],
    data_root: str | Path,
    mpp: float,
    native_mpp: float | None,
) -> list[tuple[np.ndarray, np.ndarray, str]]:
    if target.kind == "stain":
        recolour = stain_transfer(load_images(_by_id(train, sources), data_root, mpp, native_mpp, False))
        return [(recolour(img), np.ones(img.shape[:2], bool), "") for img in clean]
    used = sorted({i % len(sources) for i in range(len(clean))})
    imgs = load_images(_by_id(train, [sources[j] for j in used]), data_root, mpp, native_mpp, False)
    donors = {
        j: Donor(img, detect(img, mpp)[target.artifact], sources[j])
        for j, img in zip(used, imgs, strict=True)
    }
    out = []
    for i, img in enumerate(clean):
        d = donors[i % len(sources)]
        out.append((*paste(img, d), d.id))
    return out


def _from_cohort(
    target: Target,
    train: Sequence[ManifestRecord],
    marked: int,
    clean: Sequence[np.ndarray],
    data_root: str | Path,
    mpp: float,
    native_mpp: float | None,
) -> list[tuple[np.ndarray, np.ndarray, str]]:
    rows = [r for r in train if int(r.tumour or 0) == marked]
    cohort = Cohort(
        mpp=mpp,
        train=load_images(rows, data_root, mpp, native_mpp, False),
        train_labels=[marked] * len(rows),
        train_ids=[r.id for r in rows],
        heldout=(),
        heldout_labels=(),
        heldout_ids=(),
    )
    evidence = evidence_of(target, cohort)
    out = []
    for i, img in enumerate(clean):
        moved, mask = evidence.apply(img, i)
        src = evidence.donors[i % len(evidence.donors)].id if evidence.donors else ""
        out.append((moved, mask, src))
    return out


def explain_examples(
    model: nn.Module, card: ModelCard, examples: Sequence[StressExample]
) -> list[ExampleHeat]:
    """LRP relevance of the tumour class and tumour probabilities of ``model`` on the stress examples.

    Probabilities are the mean over tissue tiles of the audit's image tiling, as in the stress test, so
    they match ``mitigation.json``'s ``stress.baseline``/``stressed`` for the same model.
    """
    from pathxai.explain import Explainer

    p_clean = image_predictor(model, card)([e.clean for e in examples])
    out = []
    with Explainer(model, "lrp", target_class=card.tumour_index, batch_size=64) as ex:
        for e, p in zip(examples, p_clean, strict=True):
            heat = heat_of_image(e.stressed, ex, card)
            ratio = relevance_ratio([heat.relevance], [e.mask]) if not e.mask.all() else None
            out.append(ExampleHeat(heat.relevance, float(p), heat.probability, ratio))
    return out
