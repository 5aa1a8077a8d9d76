"""A record's file paths, confined to the data root."""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePosixPath, PureWindowsPath

from pathxai.errors import ManifestError
from pathxai.manifest.schema import ManifestRecord


def resolve(record: ManifestRecord, data_root: str | Path) -> Path:
    """Return the record's file path inside ``data_root``, refusing anything that escapes it.

    Raises
    ------
    ManifestError
        If the record has no path, the path is absolute, contains ``..``, or resolves (through
        symlinks) outside the data root.
    """
    if not record.path:
        raise ManifestError(
            f"row {record.id!r} (line {record.line}) has no local path",
            hint="fetch the file first (it only has a url)",
        )
    raw = record.path
    if (
        PurePosixPath(raw).is_absolute()
        or PureWindowsPath(raw).is_absolute()
        or PureWindowsPath(raw).drive
        or raw.startswith("~")
    ):
        raise ManifestError(
            f"line {record.line}: path {raw!r} is absolute; manifest paths must be relative to the data root"
        )
    parts = PurePosixPath(raw.replace("\\", "/")).parts
    if ".." in parts:
        raise ManifestError(f"line {record.line}: path {raw!r} contains '..' and would escape the data root")
    root = Path(data_root).resolve()
    full = (root / Path(*parts)).resolve()
    if full != root and root not in full.parents:
        raise ManifestError(
            f"line {record.line}: path {raw!r} resolves to {full}, outside the data root {root} (symlink?)"
        )
    return full


def resolve_mask(record: ManifestRecord, data_root: str | Path) -> Path:
    """Return the record's ``mask_path`` inside ``data_root``, with the same checks as :func:`resolve`.

    Raises
    ------
    ManifestError
        If the record has no mask, or its path is absolute, contains ``..`` or escapes the data root.
    """
    if not record.mask_path:
        raise ManifestError(f"row {record.id!r} (line {record.line}) has no mask_path")
    return resolve(dataclasses.replace(record, path=record.mask_path), data_root)
