"""The JSON summary beside each heatmap store (what it says: :func:`pathxai.store.summary.store_summary`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pathxai.jsonio import dumps_json, write_json

__all__ = ["dumps", "read_summary", "write_summary"]


def dumps(obj: Any) -> str:
    """Indented JSON with a final newline (:func:`pathxai.jsonio.dumps_json`: NaN as ``null``)."""
    return dumps_json(obj)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write a summary atomically."""
    write_json(path, summary)


def read_summary(path: Path) -> dict[str, Any]:
    """Read a summary; an unreadable one is empty."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}
