"""A heatmap store's trust summary: how faithful and how weight-dependent its method's maps are.

The summary is a small JSON object (made by :mod:`pathxai.heatmap.trust`) kept in the complete store's
``trust`` attribute; :func:`trust_line` says it in one line for the viewer and the audit report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pathxai.jsonio import dumps_json
from pathxai.store.guarded import open_guarded
from pathxai.store.heatmap import attrs_digest

__all__ = ["TRUST_ATTR", "read_trust", "trust_line", "write_trust"]

#: Store attribute that holds the summary as JSON text.
TRUST_ATTR = "trust"


def write_trust(path: str | Path, trust: Mapping[str, Any]) -> None:
    """Set the trust summary of a complete store (JSON text in its :data:`TRUST_ATTR` attribute).

    The store's recorded attribute checksum is renewed with it, so
    :func:`pathxai.store.verify.verify_store` still finds the store whole. Written through
    :func:`pathxai.store.guarded.open_guarded`: a full disk raises, it does not crash the interpreter.
    """
    h5, guard = open_guarded(path, "r+")
    try:
        h5.attrs[TRUST_ATTR] = dumps_json(dict(trust)).strip()
        raw = h5.attrs.get("checksums")
        if raw:
            checksums = json.loads(raw)
            checksums["attrs"] = attrs_digest(h5.attrs)
            h5.attrs["checksums"] = json.dumps(checksums, sort_keys=True)
    finally:
        h5.close()
        guard.close()
    guard.raise_if_failed(path=path)


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
