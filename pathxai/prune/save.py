"""Saving a pruned model: plan → model card → weights → ``pruning.json``, in one place.

The card of a pruned model is its source card with the channel plan composed onto the source's own
plan (so a model pruned twice still rebuilds from the base architecture) and a ``pruning`` note that
names the criterion, the ratio and the plan file. :func:`save_pruned_model` writes the weights and
card with :func:`pathxai.model.save_model`, then ``pruning.json`` (no bare ``NaN``: non-finite numbers
become ``null``), and loads the directory back to prove the card rebuilds the network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from pathxai import __version__
from pathxai.atomic import write_text_atomic
from pathxai.jsonio import dumps_json
from pathxai.model.card import ModelCard
from pathxai.model.io import load_model_with_card, save_model
from pathxai.prune.plan import PruningPlan, compose_plans
from pathxai.prune.report import PruneReport

__all__ = ["PLAN_FILENAME", "pruned_card", "report_json", "save_pruned_model"]

#: The report beside a pruned model's weights and card.
PLAN_FILENAME = "pruning.json"


def pruned_card(
    card: ModelCard,
    plan: PruningPlan,
    *,
    command: str = "",
    history: Mapping[str, Any] | None = None,
    heldout_metrics: Mapping[str, float] | None = None,
) -> ModelCard:
    """The model card of ``card``'s network pruned by ``plan``.

    Parameters
    ----------
    card
        Card of the model that was pruned (it may be pruned already).
    plan
        The plan computed on that model.
    command
        Command line recorded in the card (default: keep the source card's).
    history
        Entry appended to ``training["pruning_history"]`` (``None``: the training record is kept).
    heldout_metrics
        Held-out numbers of the pruned model, stored as ``metrics["pruned_heldout"]``.
    """
    training = card.training
    if history is not None:
        training = dict(card.training)
        training["pruning_history"] = [*training.get("pruning_history", []), dict(history)]
    metrics = card.metrics
    if heldout_metrics is not None:
        metrics = {**card.metrics, "pruned_heldout": dict(heldout_metrics)}
    return dataclasses.replace(
        card,
        channel_plan=compose_plans(card.channel_plan, plan.channels) or None,
        training=training,
        metrics=metrics,
        command=command or card.command,
        pathxai_version=__version__,
        extra={
            **card.extra,
            "pruning": {"criterion": plan.criterion, "ratio": plan.ratio, "plan_file": PLAN_FILENAME},
        },
    )


def report_json(report: PruneReport) -> str:
    """``pruning.json`` text: indented, key-sorted, non-finite numbers as ``null``."""
    return dumps_json(report.to_dict(), sort_keys=True)


def save_pruned_model(pruned: nn.Module, card: ModelCard, report: PruneReport, out_dir: str | Path) -> Path:
    """Write ``pruned`` with ``card`` (see :func:`pruned_card`) and ``report`` to ``out_dir``.

    Returns
    -------
    Path
        The model directory, verified to load back (sha256 and channel plan).
    """
    out = Path(out_dir)
    save_model(pruned, card, out)
    write_text_atomic(out / PLAN_FILENAME, report_json(report))
    load_model_with_card(out)
    return out
