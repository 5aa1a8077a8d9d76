"""A heatmap store's trust summary: how faithful and how weight-dependent its method's maps are.

The summary is a small JSON object (made by :mod:`pathxai.heatmap.trust`) kept in the complete store's
``trust`` attribute, written with the rest of the store when it is finalised (never added to a complete
store afterwards, so a killed run cannot leave a store half-changed); :func:`trust_line` says it in one line for the viewer and the audit report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["TRUST_ATTR", "read_trust", "trust_line"]

#: Store attribute that holds the summary as JSON text.
TRUST_ATTR = "trust"


def read_trust(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The trust summary in a store's attributes, or ``None`` when it has none (or an unreadable one)."""
    raw = attrs.get(TRUST_ATTR)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return dict(value) if isinstance(value, dict) else None


def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"


def trust_line(trust: Mapping[str, Any] | None) -> str:
    """One line, e.g. ``"faithfulness 0.77x random on 32 tiles; randomisation passes (ρ=0.22)"``.

    Parameters
    ----------
    trust
        A summary from :func:`read_trust` (``None``: the store has none).

    Returns
    -------
    str
        ``"no trust summary"`` without one, ``"no relevance"`` for a run without relevance maps.
    """
    if not trust:
        return "no trust summary"
    if trust.get("status") == "no relevance":
        return "no relevance"
    faith = trust.get("faithfulness") or {}
    rand = trust.get("randomisation") or {}
    parts = [f"faithfulness {_fmt(faith.get('ratio'))}x random on {faith.get('n_tiles', 0)} tiles"]
    if rand:
        parts.append(f"randomisation {rand.get('verdict', 'unknown')} (ρ={_fmt(rand.get('spearman'))})")
    return "; ".join(parts)
