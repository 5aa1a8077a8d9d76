"""Data manifests: a CSV per cohort, its schema, safe path resolution and validation.

Schema (see ``data_manifests/README.md``): one row per image/slide/patch. Recognised columns

============  =====================================================================
``id``        unique identifier (defaults to ``path``)
``path``      file path relative to the data root (never absolute, never ``..``)
``url``       where to download the file when it is not local
``sha256``    hex sha256 of the file
``label``     class name (e.g. ``malignant``, ``benign``, ``01_TUMOR``)
``tumor``     1 tumour / 0 non-tumour (aliases ``tumour``, ``is_tumor``, ``is_tumour``)
``patient``   patient identifier used for grouped splits (alias ``patient_id``)
``site``      acquisition centre;  ``scanner``: scanner model
``split``     ``train`` / ``val`` / ``test`` (or any name)
``mpp``       native microns per pixel of the file (aliases ``mpp_estimate``,
              ``microns_per_pixel``, ``um_per_px``: see :data:`MPP_COLUMNS`)
``mask_path`` optional ground-truth mask of the image, relative to the data root;
              non-zero pixels are inside (GlaS: gland outlines; EBHI-Seg: lesion)
============  =====================================================================

At minimum a manifest needs ``path`` (or ``url``) and ``label`` or ``tumor``. Every other column
is kept in :attr:`ManifestRecord.extra`. This module is layer 1: no torch.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from pathxai.errors import ManifestError

__all__ = [
    "ALIASES",
    "MPP_COLUMNS",
    "TUMOUR_LABELS",
    "Manifest",
    "ManifestRecord",
    "Problem",
    "drop_repeats",
    "file_sha256",
    "read_manifest",
    "resolve",
    "resolve_mask",
    "validate",
]

#: Canonical column -> accepted spellings (first match wins).
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "path": ("path",),
    "url": ("url",),
    "sha256": ("sha256",),
    "label": ("label",),
    "tumor": ("tumor", "tumour", "is_tumor", "is_tumour"),
    "patient": ("patient", "patient_id"),
    "site": ("site",),
    "scanner": ("scanner",),
    "split": ("split",),
    "mpp": ("mpp", "mpp_estimate", "microns_per_pixel", "um_per_px"),
    "mask_path": ("mask_path",),
}

#: The spellings of an image-level µm/px column, in order of preference (``mpp`` first: a manifest
#: with both a measured ``mpp`` and an ``mpp_estimate`` uses the measured one).
MPP_COLUMNS: tuple[str, ...] = ALIASES["mpp"]

#: Label spellings that map to tumour (1) / non-tumour (0) when no ``tumor`` column is given.
TUMOUR_LABELS: dict[str, int] = {
    "tumor": 1,
    "tumour": 1,
    "malignant": 1,
    "cancer": 1,
    "carcinoma": 1,
    "adenocarcinoma": 1,
    "positive": 1,
    "1": 1,
    "01_tumor": 1,
    "non-tumor": 0,
    "non-tumour": 0,
    "nontumor": 0,
    "normal": 0,
    "benign": 0,
    "negative": 0,
    "0": 0,
}

_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Problem:
    """One problem found in a manifest.

    Attributes
    ----------
    line
        Line number in the CSV file (the header is line 1); ``None`` for file-level problems.
    column
        The column concerned, or ``None``.
    message
        What is wrong and what to do.
    """

    line: int | None
    column: str | None
    message: str

    def format(self, manifest: str | Path | None = None) -> str:
        """Render as ``file:line: column: message``."""
        where = str(manifest) if manifest is not None else "manifest"
        if self.line is not None:
            where += f":{self.line}"
        col = f" [{self.column}]" if self.column else ""
        return f"{where}:{col} {self.message}"


@dataclass(frozen=True)
class ManifestRecord:
    """One manifest row with its canonical fields; other columns are in ``extra``."""

    line: int
    id: str
    path: str | None
    url: str | None
    sha256: str | None
    label: str | None
    tumour: int | None
    patient: str | None
    site: str | None
    scanner: str | None
    split: str | None
    mpp: float | None
    extra: dict[str, str] = field(default_factory=dict)
    #: Ground-truth mask file relative to the data root (``mask_path`` column), or ``None``.
    mask_path: str | None = None

    @property
    def group(self) -> str:
        """The grouping key for splits: the patient, else the id (each row its own patient)."""
        return self.patient if self.patient else self.id


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest."""

    path: Path
    columns: tuple[str, ...]
    records: tuple[ManifestRecord, ...]
    sha256: str

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ManifestRecord]:
        return iter(self.records)

    def select(self, split: str | None = None) -> list[ManifestRecord]:
        """Return the records of one split (all when ``split`` is ``None``)."""
        return [r for r in self.records if split is None or r.split == split]

    def with_default_mpp(self, mpp: float | None) -> Manifest:
        """Return a copy with ``mpp`` (µm/px) on every row that has none (``--slide-mpp``).

        Parameters
        ----------
        mpp
            Level-0 / native resolution for rows without an ``mpp`` column value; ``None`` returns
            the manifest unchanged. Rows with their own ``mpp`` keep it.
        """
        if mpp is None:
            return self
        records = tuple(r if r.mpp is not None else dataclasses.replace(r, mpp=mpp) for r in self.records)
        return dataclasses.replace(self, records=records)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _header_map(columns: Sequence[str]) -> dict[str, str]:
    present = set(columns)
    out: dict[str, str] = {}
    for canon, names in ALIASES.items():
        for n in names:
            if n in present:
                out[canon] = n
                break
    return out


def _parse(path: Path) -> tuple[tuple[str, ...], list[tuple[int, dict[str, str]]], str, list[Problem]]:
    """Read the CSV; return columns, (line, row) pairs, file sha256 and structural problems."""
    if not path.is_file():
        raise ManifestError("manifest file not found", path=path, hint="check the --manifest path")
    size = path.stat().st_size
    if size > _MAX_BYTES:
        raise ManifestError(f"manifest is {size} bytes, larger than the {_MAX_BYTES} byte limit", path=path)
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"manifest is not UTF-8 text ({exc.reason} at byte {exc.start})", path=path
        ) from exc
    if "\x00" in text:
        raise ManifestError("manifest contains NUL bytes; it is not a CSV text file", path=path)
    problems: list[Problem] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise ManifestError(
                "manifest is empty (no header row)", path=path, hint="the first line names the columns"
            )
        columns = tuple(h.strip() for h in header)
        seen: set[str] = set()
        for c in columns:
            if not c:
                problems.append(Problem(1, None, "empty column name in header"))
            elif c in seen:
                problems.append(Problem(1, c, f"column {c!r} appears twice in the header"))
            seen.add(c)
        rows: list[tuple[int, dict[str, str]]] = []
        for values in reader:
            line = reader.line_num
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) != len(columns):
                problems.append(
                    Problem(line, None, f"row has {len(values)} fields, the header has {len(columns)}")
                )
                continue
            rows.append((line, {c: v.strip() for c, v in zip(columns, values, strict=True)}))
    except csv.Error as exc:
        raise ManifestError(f"manifest is not valid CSV (line {reader.line_num}: {exc})", path=path) from exc
    return columns, rows, digest, problems


def _records(
    columns: Sequence[str], rows: list[tuple[int, dict[str, str]]]
) -> tuple[list[ManifestRecord], list[Problem]]:
    problems: list[Problem] = []
    hmap = _header_map(columns)
    if "path" not in hmap and "url" not in hmap:
        problems.append(Problem(1, "path", "missing required column 'path' (or 'url')"))
    if "label" not in hmap and "tumor" not in hmap:
        problems.append(Problem(1, "label", "missing required column 'label' or 'tumor'"))
    canon_cols = set(hmap.values())
    records: list[ManifestRecord] = []
    ids: dict[str, int] = {}
    files: dict[str, tuple[int, int | None]] = {}  # file key -> (first line, its tumour label)
    for line, row in rows:

        def get(key: str, row: dict[str, str] = row) -> str | None:
            col = hmap.get(key)
            val = row.get(col, "") if col else ""
            return val or None

        path, url = get("path"), get("url")
        if ("path" in hmap or "url" in hmap) and not path and not url:
            problems.append(Problem(line, hmap.get("path", "url"), "empty path (and no url)"))
        rid = get("id") or path or url or f"row{line}"
        if rid in ids:
            problems.append(
                Problem(line, hmap.get("id", "path"), f"duplicate id {rid!r} (first on line {ids[rid]})")
            )
        else:
            ids[rid] = line
        sha = get("sha256")
        if sha is not None:
            sha = sha.lower()
            if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                problems.append(Problem(line, hmap["sha256"], f"sha256 {sha!r} is not 64 hex digits"))
        label = get("label")
        tumour = _tumour(line, hmap, label, get("tumor"), problems)
        for key in _file_keys(path, url, sha):
            first = files.setdefault(key, (line, tumour))
            if first[0] != line and first[1] is not None and tumour is not None and first[1] != tumour:
                problems.append(
                    Problem(
                        line,
                        hmap.get("label", "tumor"),
                        f"same file as line {first[0]} ({key.split(':', 1)[0]}) but labelled "
                        f"{'tumour' if tumour else 'non-tumour'} here and "
                        f"{'tumour' if first[1] else 'non-tumour'} there (fix or remove one row)",
                    )
                )
                break
        mpp = _mpp(line, hmap, get("mpp"), problems)
        records.append(
            ManifestRecord(
                line=line,
                id=rid,
                path=path,
                url=url,
                sha256=sha,
                label=label,
                tumour=tumour,
                patient=get("patient"),
                site=get("site"),
                scanner=get("scanner"),
                split=get("split"),
                mpp=mpp,
                extra={c: v for c, v in row.items() if c not in canon_cols},
                mask_path=get("mask_path"),
            )
        )
    return records, problems


def _tumour(
    line: int, hmap: dict[str, str], label: str | None, raw: str | None, problems: list[Problem]
) -> int | None:
    """The row's 0/1 tumour flag from its ``tumor`` column, else from its ``label``; problems appended."""
    tumour: int | None = None
    if raw is not None:
        if raw not in ("0", "1"):
            problems.append(Problem(line, hmap["tumor"], f"tumor must be 0 or 1, got {raw!r}"))
        else:
            tumour = int(raw)
    elif label is not None:
        tumour = TUMOUR_LABELS.get(label.lower())
        if tumour is None and "tumor" not in hmap:
            problems.append(
                Problem(
                    line,
                    hmap.get("label"),
                    f"label {label!r} does not map to tumour/non-tumour; add a 'tumor' column (0/1)",
                )
            )
    if label is None and tumour is None and ("label" in hmap or "tumor" in hmap):
        problems.append(Problem(line, hmap.get("tumor", hmap.get("label")), "missing label"))
    return tumour


def _mpp(line: int, hmap: dict[str, str], raw: str | None, problems: list[Problem]) -> float | None:
    """The row's µm/px, or ``None`` when absent or implausible (then a problem is appended)."""
    if raw is None:
        return None
    try:
        mpp: float | None = float(raw)
    except ValueError:
        mpp = None
    if mpp is None or not math.isfinite(mpp) or not (0.01 <= mpp <= 100):
        problems.append(Problem(line, hmap["mpp"], f"mpp {raw!r} is not a plausible µm/px (0.01-100)"))
        return None
    return mpp


def _file_keys(path: str | None, url: str | None, sha: str | None) -> list[str]:
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
        keys = _file_keys(rec.path, rec.url, rec.sha256)
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


def read_manifest(path: str | Path) -> Manifest:
    """Read and check a manifest's schema (files are not touched; see :func:`validate`).

    Raises
    ------
    ManifestError
        If the file is missing or not a CSV, or any row breaks the schema (every problem listed).
    """
    path = Path(path)
    columns, rows, digest, problems = _parse(path)
    records, more = _records(columns, rows)
    problems += more
    if problems:
        listing = "; ".join(p.format() for p in problems[:10])
        more_txt = f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
        raise ManifestError(
            f"{len(problems)} problem(s) in manifest: {listing}{more_txt}",
            path=path,
            hint="run 'pathxai manifest validate' for the full list",
        )
    if not records:
        raise ManifestError("manifest has no data rows", path=path)
    return Manifest(path=path, columns=columns, records=tuple(records), sha256=digest)


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
        columns, rows, _digest, problems = _parse(path)
    except ManifestError as exc:
        return [Problem(None, None, str(exc))]
    records, more = _records(columns, rows)
    problems += more
    if not rows and not problems:
        problems.append(Problem(None, None, "manifest has no data rows"))
    root = Path(data_root) if data_root is not None else path.parent
    if not root.is_dir():
        problems.append(Problem(None, None, f"data root {root} is not a directory"))
        return problems
    path_col = _header_map(columns).get("path", "path")
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
