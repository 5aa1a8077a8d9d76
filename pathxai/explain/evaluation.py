"""Quality of explanation methods on labelled patches, streamed batch by batch (``pathxai explain-eval``).

:class:`ExplanationEvaluator` holds one :class:`~pathxai.explain.explainer.Explainer` per method and, for
every :class:`EvalBatch`, keeps only per-patch scores (never the patches or maps). :meth:`summary`
turns them into means with bootstrap confidence intervals over patches, grouped as Quantus groups them:

* faithfulness — region perturbation (:func:`pathxai.explain.metrics.region_perturbation`) on the
  explained class's *probability*, most- (MoRF) and least-relevant (LeRF) regions first, replaced by a
  blurred copy of the patch (tissue-like, not black); areas and their ratio to a random order on the same
  patches (``morf_ratio`` < 1: deletes evidence faster than random);
* randomisation — cascading model-parameter randomisation (:mod:`pathxai.explain.randomisation`,
  Spearman of ``|R|``, top-down) and the random-logit test (Pearson of the map for the explained class
  with the map for another class; near +1 = the map ignores the class);
* localisation — positive relevance mass inside the mask, its ratio to the mask's area share (chance
  = 1), relevance rank accuracy, pointing game (and its chance level, the mask's area share);
* robustness — Pearson of the map with the map under HED stain jitter and under a one-pixel shift;
* complexity — Gini sparseness and entropy of ``|R|``;
* axiomatic — conservation ``sum R / logit`` (LRP methods only).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pathxai.explain.bootstrap import Summary, bootstrap_mean, bootstrap_ratio
from pathxai.explain.explainer import Explainer
from pathxai.explain.methods import LRP, METHODS
from pathxai.explain.metrics import (
    random_relevance,
    region_perturbation,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from pathxai.explain.randomisation import cascading_randomisation, verdict
from pathxai.explain.scores import conservation, entropy, gini, map_correlation, pointing_game

Tensor = torch.Tensor

#: Methods that cost many backward passes per patch: compared, never recommended as the default.
MULTI_PASS = frozenset({"smoothgrad", "integrated_gradients"})


@dataclass(frozen=True)
class MethodSpec:
    """A method name with options, written ``name`` or ``name:key=value:key=value`` (e.g. ``gamma=0.1``)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The spec as written (the key in the results)."""
        return ":".join([self.name, *(f"{k}={v:g}" for k, v in self.options.items())])

    @classmethod
    def parse(cls, text: str) -> MethodSpec:
        """Parse ``name[:key=value...]``; values are floats.

        Raises
        ------
        ValueError
            For an unknown method or a malformed option.
        """
        name, *opts = text.strip().split(":")
        if name not in METHODS:
            raise ValueError(
                f"unknown explanation method {name!r}; valid methods: {', '.join(sorted(METHODS))}"
            )
        options: dict[str, Any] = {}
        for opt in opts:
            key, sep, value = opt.partition("=")
            try:
                v = value.strip()
                options[key.strip()] = int(v) if v.isdigit() else float(v)
            except ValueError:
                sep = ""
            if not sep or not key.strip():
                raise ValueError(f"method option {opt!r} in {text!r} is not key=number")
        return cls(name, options)


@dataclass(frozen=True)
class EvalBatch:
    """One batch of patches with everything the metrics need.

    Attributes
    ----------
    x : torch.Tensor
        ``(B, C, H, W)`` model inputs (normalised).
    x_jitter : torch.Tensor
        The same patches after HED stain jitter, normalised.
    x_shift : torch.Tensor
        The patches cut one pixel further right and down: ``x_shift[..., i, j] = x[..., i + 1, j + 1]``.
    target : torch.Tensor
        ``(B,)`` explained class per patch.
    tumour : numpy.ndarray
        ``(B,)`` bool, the patch's label is tumour.
    mask : numpy.ndarray or None
        ``(B, H, W)`` bool ground truth; ``has_mask`` says which rows have one.
    has_mask : numpy.ndarray
        ``(B,)`` bool.
    """

    x: Tensor
    x_jitter: Tensor
    x_shift: Tensor
    target: Tensor
    tumour: np.ndarray
    mask: np.ndarray | None
    has_mask: np.ndarray


def _is_lrp(name: str) -> bool:
    return issubclass(METHODS[name], LRP)


class ExplanationEvaluator:
    """Accumulate per-patch quality scores of several methods over streamed batches.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier (eval mode is used; it is not modified).
    specs : sequence of MethodSpec
        Methods to evaluate.
    steps, region : int
        Region perturbation: number of steps and side of the square regions in pixels.
    randomisation_patches : int
        Patches (the first ones seen) on which cascading randomisation runs: it explains them once per
        layer, the costliest test.
    seed : int
        Seed of the random orders, re-initialisations and bootstrap.
    explain_batch : int
        Largest chunk per explainer call.
    """

    def __init__(
        self,
        model: nn.Module,
        specs: Sequence[MethodSpec],
        *,
        steps: int = 16,
        region: int = 8,
        randomisation_patches: int = 16,
        seed: int = 0,
        explain_batch: int = 32,
    ) -> None:
        if not specs:
            raise ValueError("no methods to evaluate")
        self.model = model.eval()
        self.specs = list(specs)
        self.steps, self.region = steps, region
        self.randomisation_patches = randomisation_patches
        self.seed = seed
        self.explain_batch = explain_batch
        self.explainers = {
            s.label: Explainer(model, s.name, batch_size=explain_batch, **dict(s.options)) for s in self.specs
        }
        self.values: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
        self.curves: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
        self.cascade: dict[str, list[np.ndarray]] = defaultdict(list)
        self.cascade_layers: list[str] = []
        self.seconds: dict[str, float] = defaultdict(float)
        self.fractions: np.ndarray | None = None
        self.n_patches = 0
        self.n_batches = 0
        self._random_auc: list[np.ndarray] = []
        self._tumour: list[np.ndarray] = []

    # -- streaming -------------------------------------------------------------------------------
    def _add_curve(self, label: str, key: str, scores: np.ndarray) -> None:
        total = scores.sum(0)
        self.curves[label][key] = self.curves[label].get(key, 0) + total

    def _perturb(self, rel: np.ndarray, batch: EvalBatch, order: str) -> tuple[np.ndarray, np.ndarray]:
        curve = region_perturbation(
            self.model,
            batch.x,
            rel,
            batch.target,
            patch=self.region,
            steps=self.steps,
            baseline="blur",
            order=order,  # type: ignore[arg-type]
            score="probability",
        )
        self.fractions = curve.fractions
        return curve.auc, curve.scores

    def update(self, batch: EvalBatch) -> None:
        """Score every method on one batch and keep the per-patch values."""
        n = len(batch.x)
        if n == 0:
            return
        _, _, h, w = batch.x.shape
        rand_auc, rand_scores = self._perturb(
            random_relevance((n, h, w), seed=self.seed + self.n_batches), batch, "morf"
        )
        self._random_auc.append(rand_auc)
        self._add_curve("random", "morf", rand_scores)
        self._tumour.append(batch.tumour.astype(bool))
        k_rand = max(0, min(n, self.randomisation_patches - self.n_patches))
        for spec in self.specs:
            explainer = self.explainers[spec.label]
            start = time.perf_counter()
            exp = explainer(batch.x, batch.target)
            self.seconds[spec.label] += time.perf_counter() - start
            v = self.values[spec.label]
            self._faithfulness(spec.label, exp.relevance, batch)
            self._randomisation(spec, explainer, exp.relevance, exp.logits.shape[1], batch, k_rand)
            if batch.mask is not None and batch.has_mask.any():
                _localisation(v, exp.relevance, batch.mask, batch.has_mask)
            _robustness(v, explainer, exp.relevance, batch)
            v["gini"].append(gini(exp.relevance))
            v["entropy"].append(entropy(exp.relevance))
            if _is_lrp(spec.name):
                logit = exp.logits[np.arange(n), batch.target.numpy()]
                v["conservation"].append(conservation(exp.relevance, logit))
        self.n_patches += n
        self.n_batches += 1

    def _faithfulness(self, label: str, rel: np.ndarray, batch: EvalBatch) -> None:
        for order in ("morf", "lerf"):
            auc, scores = self._perturb(rel, batch, order)
            self.values[label][f"{order}_auc"].append(auc)
            self._add_curve(label, order, scores)

    def _randomisation(
        self,
        spec: MethodSpec,
        explainer: Explainer,
        rel: np.ndarray,
        n_classes: int,
        batch: EvalBatch,
        k_rand: int,
    ) -> None:
        other = (batch.target + 1) % n_classes
        self.values[spec.label]["random_logit_pearson"].append(
            map_correlation(rel, explainer(batch.x, other).relevance, kind="pearson")
        )
        if not k_rand:
            return
        res = cascading_randomisation(
            self.model,
            spec.name,
            batch.x[:k_rand],
            batch.target[:k_rand],
            rel[:k_rand],
            seed=self.seed,
            batch_size=self.explain_batch,
            **spec.options,
        )
        self.cascade_layers = res.layers
        self.cascade[spec.label].append(res.spearman)

    def close(self) -> None:
        """Remove every explainer's hooks."""
        for explainer in self.explainers.values():
            explainer.close()

    def __enter__(self) -> ExplanationEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- summary ---------------------------------------------------------------------------------
    def _cat(self, label: str, key: str) -> np.ndarray:
        parts = self.values[label].get(key, [])
        return np.concatenate(parts) if parts else np.zeros(0)

    def method_summary(self, label: str) -> dict[str, Any]:
        """The JSON entry of one method: metric groups of ``{"mean", "ci_low", "ci_high", "n"}``."""
        s = self.seed
        random_auc = np.concatenate(self._random_auc) if self._random_auc else np.zeros(0)
        tumour = np.concatenate(self._tumour) if self._tumour else np.zeros(0, bool)
        morf, lerf = self._cat(label, "morf_auc"), self._cat(label, "lerf_auc")
        faith: dict[str, Summary] = {
            "morf_auc": bootstrap_mean(morf, seed=s),
            "lerf_auc": bootstrap_mean(lerf, seed=s),
            "random_auc": bootstrap_mean(random_auc, seed=s),
            "morf_ratio": bootstrap_ratio(morf, random_auc, seed=s),
            "lerf_ratio": bootstrap_ratio(lerf, random_auc, seed=s),
            "morf_ratio_tumour": bootstrap_ratio(morf[tumour], random_auc[tumour], seed=s),
            "morf_ratio_non_tumour": bootstrap_ratio(morf[~tumour], random_auc[~tumour], seed=s),
            "morf_beats_random": bootstrap_mean((morf < random_auc).astype(float), seed=s),
        }
        full = np.concatenate([c[-1] for c in self.cascade[label]]) if self.cascade[label] else np.zeros(0)
        rand: dict[str, Summary] = {
            "cascading_spearman_full": bootstrap_mean(full, seed=s),
            "random_logit_pearson": bootstrap_mean(self._cat(label, "random_logit_pearson"), seed=s),
        }
        loc: dict[str, Summary] = {}
        if self.values[label].get("relevance_mass"):
            mass, share = self._cat(label, "relevance_mass"), self._cat(label, "mask_share")
            loc = {
                "relevance_mass": bootstrap_mean(mass, seed=s),
                "mask_share": bootstrap_mean(share, seed=s),
                "relevance_mass_ratio": bootstrap_ratio(mass, share, seed=s),
                "rank_accuracy": bootstrap_mean(self._cat(label, "rank_accuracy"), seed=s),
                "pointing_game": bootstrap_mean(self._cat(label, "pointing_game"), seed=s),
                "pointing_chance": bootstrap_mean(self._cat(label, "pointing_chance"), seed=s),
            }
        out: dict[str, Any] = {
            "faithfulness": faith,
            "randomisation": rand,
            "localisation": loc,
            "robustness": {
                "stain_jitter_pearson": bootstrap_mean(self._cat(label, "stain_jitter_pearson"), seed=s),
                "shift_pearson": bootstrap_mean(self._cat(label, "shift_pearson"), seed=s),
            },
            "complexity": {
                "gini": bootstrap_mean(self._cat(label, "gini"), seed=s),
                "entropy": bootstrap_mean(self._cat(label, "entropy"), seed=s),
            },
        }
        if self.values[label].get("conservation"):
            out["axiomatic"] = {"conservation": bootstrap_mean(self._cat(label, "conservation"), seed=s)}
        cascade_means = (
            np.concatenate(self.cascade[label], axis=1).mean(1).tolist() if self.cascade[label] else []
        )
        spec = next(sp for sp in self.specs if sp.label == label)
        out["details"] = {
            "method": spec.name,
            "options": spec.options,
            "one_pass": spec.name not in MULTI_PASS,
            "randomisation_verdict": verdict(rand["cascading_spearman_full"]["mean"]),  # type: ignore[arg-type]
            "cascade": [
                {"layer": ly, "spearman": float(m)}
                for ly, m in zip(self.cascade_layers, cascade_means, strict=True)
            ],
            "explain_seconds": round(self.seconds[label], 3),
        }
        return out

    def mean_curves(self) -> dict[str, dict[str, list[float]]]:
        """Mean perturbation curves per method (``morf``, ``lerf``) and for ``random``."""
        n = max(self.n_patches, 1)
        return {
            label: {k: (np.asarray(v) / n).tolist() for k, v in curves.items()}
            for label, curves in self.curves.items()
        }

    def summary(self) -> dict[str, Any]:
        """Every method's summary, the curves, and the recommendation."""
        methods = {s.label: self.method_summary(s.label) for s in self.specs}
        return {
            "methods": methods,
            "recommendation": recommend(methods),
            "curves": {
                "fractions": [] if self.fractions is None else self.fractions.tolist(),
                **self.mean_curves(),
            },
            "n_patches": self.n_patches,
            "n_tumour_patches": int(np.concatenate(self._tumour).sum()) if self._tumour else 0,
            "randomisation_patches": min(self.n_patches, self.randomisation_patches),
        }


def _localisation(
    v: dict[str, list[np.ndarray]], rel: np.ndarray, mask: np.ndarray, has_mask: np.ndarray
) -> None:
    """Relevance mass, rank accuracy and pointing game (NaN for rows without a mask) with chance levels."""
    n = len(rel)
    share = mask.reshape(n, -1).mean(1)
    nan = np.full(n, np.nan)
    v["relevance_mass"].append(np.where(has_mask, relevance_mass_accuracy(rel, mask), nan))
    v["mask_share"].append(np.where(has_mask, share, nan))
    v["rank_accuracy"].append(np.where(has_mask, relevance_rank_accuracy(rel, mask), nan))
    informative = has_mask & (share > 0) & (share < 1)  # a full or empty mask cannot be pointed at
    v["pointing_game"].append(np.where(informative, pointing_game(rel, mask), nan))
    v["pointing_chance"].append(np.where(informative, share, nan))


def _robustness(
    v: dict[str, list[np.ndarray]], explainer: Explainer, rel: np.ndarray, batch: EvalBatch
) -> None:
    """Map stability under stain jitter and under a one-pixel shift (maps aligned on the overlap)."""
    v["stain_jitter_pearson"].append(map_correlation(rel, explainer(batch.x_jitter, batch.target).relevance))
    shifted = explainer(batch.x_shift, batch.target).relevance
    v["shift_pearson"].append(map_correlation(rel[:, 1:, 1:], shifted[:, :-1, :-1]))


def recommend(methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Pick the default among one-backward-pass methods by the evidence.

    Rule: a candidate must delete evidence faster than random (``morf_ratio`` upper CI bound < 1) and
    must not fail the cascading randomisation test; among those the lowest ``morf_ratio`` (on tumour
    patches when there are any) wins. Passing randomisation does not make an unfaithful method better.

    Returns
    -------
    dict
        ``method`` (or ``None`` when no candidate qualifies), ``rule``, and ``ranking`` (every one-pass
        method with the numbers the rule used and why it was excluded, if it was).
    """
    ranking = []
    for label, m in methods.items():
        if not m["details"]["one_pass"]:
            continue
        f = m["faithfulness"]
        ratio = f["morf_ratio_tumour"] if f["morf_ratio_tumour"]["mean"] is not None else f["morf_ratio"]
        rv = m["details"]["randomisation_verdict"]
        excluded = None
        if ratio["ci_high"] is None or ratio["ci_high"] >= 1:
            excluded = "not faster than random deletion"
        elif rv == "fails":
            excluded = "fails the randomisation test"
        ranking.append(
            {
                "method": label,
                "morf_ratio": ratio["mean"],
                "morf_ratio_ci_high": ratio["ci_high"],
                "randomisation": rv,
                "excluded": excluded,
            }
        )
    ranking.sort(
        key=lambda r: (r["excluded"] is not None, r["morf_ratio"] if r["morf_ratio"] is not None else 9e9)
    )
    best = next((r["method"] for r in ranking if r["excluded"] is None), None)
    return {
        "method": best,
        "rule": "one-backward-pass methods only; MoRF area ratio to random (tumour patches) upper CI < 1 and "
        "cascading randomisation not 'fails'; lowest MoRF ratio wins",
        "ranking": ranking,
    }
