"""``pathxai manifest validate``'s engine: schema, files on disk and their checksums; labelled rows."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pathxai.errors import ManifestError
from pathxai.manifest.paths import resolve
from pathxai.manifest.read import parse_csv, parse_records
from pathxai.manifest.schema import Manifest, ManifestRecord, Problem, header_map


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def validate(
    manifest_path: str | Path, data_root: str | Path | None = None, checksums: bool = True
) -> list[Problem]:
    """Check a manifest's schema, files and checksums; return every problem found.

    Parameters
    ----------
    manifest_path
        The CSV manifest.
    data_root
        Directory the paths are relative to (default: the manifest's directory).
    checksums
        Compare each file's sha256 with the ``sha256`` column.

    Returns
    -------
    list[Problem]
        Empty when the manifest is valid.
    """
    path = Path(manifest_path)
    try:
        columns, rows, _digest, problems = parse_csv(path)
    except ManifestError as exc:
        return [Problem(None, None, str(exc))]
    records, more = parse_records(columns, rows)
    problems += more
    if not rows and not problems:
        problems.append(Problem(None, None, "manifest has no data rows"))
    root = Path(data_root) if data_root is not None else path.parent
    if not root.is_dir():
        problems.append(Problem(None, None, f"data root {root} is not a directory"))
        return problems
    path_col = header_map(columns).get("path", "path")
    for rec in records:
        if not rec.path:
            continue
        try:
            full = resolve(rec, root)
        except ManifestError as exc:
            problems.append(Problem(rec.line, path_col, str(exc)))
            continue
        if not full.is_file():
            problems.append(Problem(rec.line, path_col, f"file not found: {full}"))
            continue
        if not os.access(full, os.R_OK):
            problems.append(Problem(rec.line, path_col, f"file not readable: {full}"))
            continue
        if checksums and rec.sha256:
            actual = file_sha256(full)
            if actual != rec.sha256:
                problems.append(
                    Problem(
                        rec.line,
                        "sha256",
                        f"checksum mismatch for {rec.path}: file has {actual}, manifest says {rec.sha256}",
                    )
                )
    return sorted(problems, key=lambda p: p.line or 0)


def labelled_records(manifest: Manifest) -> list[ManifestRecord]:
    """Every row of ``manifest``; a row without a tumour label is a :class:`ManifestError`."""
    recs = list(manifest.records)
    bad = [r for r in recs if r.tumour is None]
    if bad:
        raise ManifestError(
            f"{len(bad)} row(s) without a tumour label, first on line {bad[0].line}",
            path=manifest.path,
            hint="add a 'tumor' column (0/1) or labels such as benign/malignant",
        )
    return recs
