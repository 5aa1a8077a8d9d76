"""Mitigation methods by name, and the automatic choice per kind of finding.

=============  =========================================================================  ===========
method         what it does                                                               retrains
=============  =========================================================================  ===========
``clarc-p``    projects the concept direction out of a layer (a module baked into the     no
               model, see :mod:`pathxai.model.projection`)
``rr-clarc``   fine-tunes with a penalty on the gradient along the concept direction      yes
``clarc-a``    fine-tunes with the concept added to half of every batch in the layer      yes
``mask``       fine-tunes on training images whose artifact is filled in from around it   yes
``stain``      fine-tunes on the training images plus two copies of each, recoloured to   yes
               each class's stain whatever the image's label (the colour, and the traces
               of recolouring, no longer predict the label)
``rebalance``  fine-tunes with sampling weights that make every (group, label) cell       yes
               weigh the same (group: the artifact's presence, or the site / patient)
``prune``      removes the conv channels to which the transplanted artifact adds the      no
               most LRP relevance for the marked class (channel surgery, a smaller
               model; see :mod:`pathxai.mitigate.channels`)
=============  =========================================================================  ===========
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from pathxai.audit.artifacts import detect
from pathxai.mitigate.cav import Concept, fit_concept
from pathxai.mitigate.channels import artifact_channels, default_count, remove_channels
from pathxai.mitigate.evidence import Cohort, Evidence, paired_patches
from pathxai.mitigate.finetune import ConceptEdit, FinetuneSettings, finetune
from pathxai.mitigate.select import Target
from pathxai.mitigate.transplant import fill_masked, stain_transfer
from pathxai.model.card import ModelCard
from pathxai.model.projection import install_projection, projection_spec

__all__ = ["AUTO", "METHOD_KINDS", "Outcome", "choose_method", "recalibrate", "run_method"]

#: The method ``auto`` picks per kind of finding (see benchmarks/mitigate.md for why).
AUTO = {"artifact": "clarc-p", "stain": "stain", "sampling": "rebalance"}
#: Kinds of finding each method can act on.
METHOD_KINDS = {
    "clarc-p": ("artifact", "stain"),
    "rr-clarc": ("artifact", "stain"),
    "clarc-a": ("artifact", "stain"),
    "mask": ("artifact",),
    "stain": ("stain",),
    "rebalance": ("artifact", "sampling"),
    "prune": ("artifact",),
}


@dataclass
class Outcome:
    """A method's result: the new model, its card's projection entry, and what was done.

    ``channel_plan`` (method ``prune``): the kept channels of the layers that lost some, relative to
    the model the method was given.
    """

    model: nn.Module
    projection: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    channel_plan: dict[str, list[int]] | None = None


@dataclass(frozen=True)
class MethodJob:
    """What every method gets: the model (never modified), its card, the cohort, the evidence, the layer."""

    model: nn.Module
    card: ModelCard
    cohort: Cohort
    ev: Evidence
    layer: str
    settings: FinetuneSettings
    progress: Callable[[int, int, float], None] | None = None

    def concept(self) -> Concept:
        """The finding's concept direction in ``layer`` (from paired artifact / clean patches)."""
        return _concept(self.model, self.card, self.cohort, self.ev, self.layer)

    def finetune(
        self, images: Sequence[np.ndarray], labels: Sequence[int], **kw: Any
    ) -> tuple[nn.Module, list[dict[str, float]]]:
        """Fine-tune a copy of the model on ``images`` with the job's settings and progress."""
        return finetune(self.model, self.card, images, labels, self.settings, progress=self.progress, **kw)


def choose_method(method: str, target: Target) -> str:
    """The concrete method for ``target`` (``auto`` resolved).

    Raises
    ------
    ValueError
        If the method cannot act on this kind of finding.
    """
    name = AUTO.get(target.kind, "") if method == "auto" else method
    if name not in METHOD_KINDS or target.kind not in METHOD_KINDS[name]:
        ok = [m for m, kinds in METHOD_KINDS.items() if target.kind in kinds]
        raise ValueError(
            f"--method {method} cannot act on {target.id} (a {target.kind} finding); use one of {ok}"
        )
    return name


def _concept(model: nn.Module, card: ModelCard, cohort: Cohort, ev: Evidence, layer: str) -> Concept:
    other = cohort.of_class(1 - ev.target.flagged_class)
    art, cln = paired_patches(other, ev, card.input_size)
    return fit_concept(model, card, layer, art, cln)


def recalibrate(model: nn.Module, card: ModelCard, images: list[np.ndarray], labels: list[int]) -> float:
    """Shift the last linear layer's biases so the 0.5 threshold sits at the best balanced accuracy on ``images``.

    Removing a concept that pushed one class up moves every probability of that class down; the AUC
    stays, the threshold does not. Returns the logit shift applied (0 when not a two-class model).
    """
    import torch

    from pathxai.audit.heat import image_predictor

    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if card.num_classes != 2 or not last or last[-1].bias is None:
        return 0.0
    p = np.clip(image_predictor(model, card)(images), 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p))
    y = np.asarray(labels)
    if len(set(y.tolist())) < 2:
        return 0.0
    cands = np.unique(logit)
    bal = [((logit[y == 1] >= t).mean() + (logit[y == 0] < t).mean()) / 2 for t in cands]
    shift = float(cands[int(np.argmax(bal))]) - 1e-3  # the best threshold moves to logit 0
    with torch.no_grad():
        last[-1].bias[card.tumour_index] -= shift / 2
        last[-1].bias[1 - card.tumour_index] += shift / 2
    return shift


def _clarc_p(job: MethodJob) -> Outcome:
    concept = job.concept()
    new = copy.deepcopy(job.model)
    install_projection(new, job.layer, concept.channels, concept.direction, concept.offset)
    shift = recalibrate(new, job.card, list(job.cohort.train), list(job.cohort.train_labels))
    info = {**concept.info(), "threshold_shift_logit": shift}
    spec = projection_spec(job.layer, concept.channels, method="clarc-p", finding=job.ev.target.id)
    return Outcome(new, spec, info)


def _edit_method(mode: str) -> Callable[[MethodJob], Outcome]:
    def run(job: MethodJob) -> Outcome:
        concept = job.concept()
        new, hist = job.finetune(job.cohort.train, job.cohort.train_labels, edit=ConceptEdit(concept, mode))
        return Outcome(new, None, {**concept.info(), "history": hist})

    return run


def _mask(job: MethodJob) -> Outcome:
    kind, cohort = job.ev.target.artifact, job.cohort
    images, n = [], 0
    for img in cohort.train:
        m = detect(img, cohort.mpp)[kind]
        n += int(m.any())
        images.append(fill_masked(img, m) if m.any() else img)
    new, hist = job.finetune(images, cohort.train_labels)
    return Outcome(
        new, None, {"masked_images": n, "fill": "normalised-convolution in-painting", "history": hist}
    )


def _stain(job: MethodJob) -> Outcome:
    cohort = job.cohort
    rng = np.random.default_rng(job.settings.seed)
    to_class = {}
    for cls in (0, 1):
        imgs = cohort.of_class(cls)
        pick = rng.choice(len(imgs), min(12, len(imgs)), replace=False)
        to_class[cls] = stain_transfer([imgs[int(i)] for i in pick])
    # every image three times: as it is, and in the stain of each class whatever its label. Copies in
    # the *other* class's stain only (the first version) made "recoloured" itself predict the label:
    # the model learnt that a recoloured tumour stain means benign and over-corrected
    # (benchmarks/mitigate.md)
    images, labels = list(cohort.train), list(cohort.train_labels)
    for cls in (0, 1):
        images += [to_class[cls](im) for im in cohort.train]
        labels += list(cohort.train_labels)
    new, hist = job.finetune(images, labels)
    return Outcome(new, None, {"stain_copies": len(images) - len(cohort.train), "history": hist})


def _groups(cohort: Cohort, target: Target) -> tuple[str, list[str]]:
    if target.kind == "artifact":
        present = [str(bool(detect(im, cohort.mpp)[target.artifact].mean() >= 0.01)) for im in cohort.train]
        return f"presence of {target.artifact}", present
    for col in ("site", "scanner", "patient"):
        vals = cohort.train_groups.get(col)
        if vals is not None and len(set(vals)) > 1:
            return col, [str(v) for v in vals]
    return "none", ["all"] * len(cohort.train)


def _rebalance(job: MethodJob) -> Outcome:
    cohort = job.cohort
    col, groups = _groups(cohort, job.ev.target)
    cells: dict[tuple[str, int], int] = {}
    for g, y in zip(groups, cohort.train_labels, strict=True):
        cells[(g, int(y))] = cells.get((g, int(y)), 0) + 1
    weights = [1.0 / cells[(g, int(y))] for g, y in zip(groups, cohort.train_labels, strict=True)]
    new, hist = job.finetune(cohort.train, cohort.train_labels, weights=weights)
    return Outcome(
        new,
        None,
        {"group": col, "cells": {f"{g}|{y}": n for (g, y), n in sorted(cells.items())}, "history": hist},
    )


def _prune(job: MethodJob) -> Outcome:
    if job.card.projection:
        raise ValueError(
            "--method prune cannot remove channels of a model with a concept projection "
            f"({job.card.projection.get('layer')}); prune the model before projecting"
        )
    other = job.cohort.of_class(1 - job.ev.target.flagged_class)
    art, cln = paired_patches(other, job.ev, job.card.input_size)
    idx = job.card.tumour_index if job.ev.target.flagged_class == 1 else 1 - job.card.tumour_index
    ranking = artifact_channels(job.model, job.card, art, cln, idx)
    k = job.settings.prune_channels or default_count(job.model, job.card)
    top = ranking.top(k)
    if not top:
        raise ValueError(f"{job.ev.target.id}: the artifact adds relevance to no channel; nothing to prune")
    new, plan = remove_channels(job.model, job.card, top)
    shift = recalibrate(new, job.card, list(job.cohort.train), list(job.cohort.train_labels))
    info = {
        "channels_removed": len(top),
        "channels_asked": k,
        "removed": [{"layer": n, "channel": c, "score": s} for n, c, s in top],
        "n_pairs": ranking.n_pairs,
        "score": "mean over paired patches of LRP channel relevance with minus without the artifact",
        "threshold_shift_logit": shift,
    }
    return Outcome(new, None, info, channel_plan=plan)


_METHODS: dict[str, Callable[[MethodJob], Outcome]] = {
    "clarc-p": _clarc_p,
    "rr-clarc": _edit_method("rr"),
    "clarc-a": _edit_method("add"),
    "mask": _mask,
    "stain": _stain,
    "rebalance": _rebalance,
    "prune": _prune,
}


def run_method(
    name: str,
    model: nn.Module,
    card: ModelCard,
    cohort: Cohort,
    evidence: Evidence,
    layer: str,
    settings: FinetuneSettings,
    progress: Callable[[int, int, float], None] | None = None,
) -> Outcome:
    """Run method ``name`` (see the module table) on ``model`` (not modified)."""
    return _METHODS[name](MethodJob(model, card, cohort, evidence, layer, settings, progress))
