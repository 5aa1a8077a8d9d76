"""Output directories: made when missing, refused in one line when the name is taken by a file."""

from __future__ import annotations

from pathlib import Path

from pathxai.errors import PathXAIError

__all__ = ["output_dir"]


def output_dir(path: str | Path) -> Path:
    """Create the output directory ``path`` (and its parents) if needed and return it.

    Raises
    ------
    PathXAIError
        If ``path`` (or a parent) exists and is not a directory.
    """
    out = Path(path)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise PathXAIError(
                "is a file, not a directory", path=p, hint="the output is a directory; choose another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    return out
