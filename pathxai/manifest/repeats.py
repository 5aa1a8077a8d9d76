"""Rows that name the same file: their keys, and a manifest with each file once."""

from __future__ import annotations

import dataclasses
import os

from pathxai.manifest.schema import Manifest, ManifestRecord


def file_keys(path: str | None, url: str | None, sha: str | None) -> list[str]:
    """What names a row's file: its normalised path or URL, and its sha256 when given."""
    keys = [f"path:{os.path.normpath(path)}"] if path else [f"url:{url}"] if url else []
    return keys + ([f"sha256:{sha}"] if sha else [])


def drop_repeats(manifest: Manifest) -> tuple[Manifest, list[tuple[int, int]]]:
    """The manifest with each file once (its first row); and ``(line, first line)`` of each row dropped.

    A file is repeated when two rows give the same normalised path or URL, or the same sha256.
    (Rows that repeat a file with another label are already refused by :func:`read_manifest`.)
    """
    seen: dict[str, int] = {}
    kept: list[ManifestRecord] = []
    dropped: list[tuple[int, int]] = []
    for rec in manifest.records:
        keys = file_keys(rec.path, rec.url, rec.sha256)
        first = next((seen[k] for k in keys if k in seen), None)
        if first is not None:
            dropped.append((rec.line, first))
            continue
        for k in keys:
            seen[k] = rec.line
        kept.append(rec)
    if not dropped:
        return manifest, []
    return dataclasses.replace(manifest, records=tuple(kept)), dropped
