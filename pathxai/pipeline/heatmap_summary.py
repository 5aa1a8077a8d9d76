"""The JSON summary beside each heatmap store (what it says: :func:`pathxai.store.summary.store_summary`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pathxai.atomic import write_text_atomic

__all__ = ["dumps", "read_summary", "write_summary"]


def dumps(obj: Any) -> str:
    """Indented JSON with a final newline (numpy scalars as floats)."""
    return json.dumps(obj, indent=2, default=float) + "\n"


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write a summary atomically."""
    write_text_atomic(path, dumps(summary))


def read_summary(path: Path) -> dict[str, Any]:
    """Read a summary; an unreadable one is empty."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}
