"""Reading a manifest CSV: structural checks, then every row checked against the schema."""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Sequence
from pathlib import Path

from pathxai.errors import ManifestError
from pathxai.manifest.repeats import file_keys
from pathxai.manifest.schema import TUMOUR_LABELS, Manifest, ManifestRecord, Problem, header_map

_MAX_BYTES = 64 * 1024 * 1024


def parse_csv(path: Path) -> tuple[tuple[str, ...], list[tuple[int, dict[str, str]]], str, list[Problem]]:
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


def parse_records(
    columns: Sequence[str], rows: list[tuple[int, dict[str, str]]]
) -> tuple[list[ManifestRecord], list[Problem]]:
    """Check every row against the schema; return the records and every problem found."""
    problems: list[Problem] = []
    hmap = header_map(columns)
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
        for key in file_keys(path, url, sha):
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


def read_manifest(path: str | Path) -> Manifest:
    """Read and check a manifest's schema (files are not touched; see :func:`validate`).

    Raises
    ------
    ManifestError
        If the file is missing or not a CSV, or any row breaks the schema (every problem listed).
    """
    path = Path(path)
    columns, rows, digest, problems = parse_csv(path)
    records, more = parse_records(columns, rows)
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
