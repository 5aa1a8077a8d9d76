"""Which slides a heatmap run processes: slide paths and CSV manifests expanded into jobs with unique ids."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pathxai.errors import ManifestError

__all__ = ["SlideJob", "resolve_jobs"]


@dataclass(frozen=True)
class SlideJob:
    """One slide to process: its path, output id and optional level-0 mpp override."""

    path: str
    slide_id: str
    slide_mpp: float | None = None


def _slide_id(path: Path, used: set[str]) -> str:
    base = path.stem or "slide"
    sid, i = base, 2
    while sid in used:
        sid, i = f"{base}-{i}", i + 1
    used.add(sid)
    return sid


def _read_manifest_paths(
    manifest: Path, data_root: Path | None
) -> list[tuple[Path, str | None, float | None]]:
    from pathxai.manifest import ManifestRecord, resolve

    root = data_root if data_root is not None else manifest.parent
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
            if "path" not in cols:
                raise ManifestError(
                    f"manifest has no 'path' column (columns: {sorted(cols)})",
                    path=manifest,
                    hint="a heatmap manifest needs a 'path' column, relative to --data-root",
                )
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"cannot read manifest ({exc})", path=manifest) from exc
    out: list[tuple[Path, str | None, float | None]] = []
    for line, row in enumerate(rows, start=2):
        raw = (row.get(cols["path"]) or "").strip()
        if not raw:
            raise ManifestError(f"line {line}: empty path", path=manifest)
        rec = ManifestRecord(line, raw, raw, None, None, None, None, None, None, None, None, None)
        try:
            full = resolve(rec, root)
        except ManifestError as exc:
            raise ManifestError(str(exc), path=manifest, hint=exc.hint) from exc
        sid = next(
            (row[cols[c]].strip() for c in ("slide_id", "id") if c in cols and row[cols[c]].strip()), None
        )
        mpp_raw = next(
            (row[cols[c]].strip() for c in ("slide_mpp", "mpp") if c in cols and row[cols[c]].strip()), ""
        )
        try:
            mpp = float(mpp_raw) if mpp_raw else None
        except ValueError:
            raise ManifestError(f"line {line}: mpp {mpp_raw!r} is not a number", path=manifest) from None
        out.append((full, sid, mpp))
    return out


def _path_key(path: Path) -> str:
    """The same file however it is written (relative, ``..``, symlinks)."""
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):  # a symlink loop: the error comes when the slide is opened
        return str(path.absolute())


def resolve_jobs(
    inputs: Sequence[str | Path],
    data_root: str | Path | None = None,
    slide_mpp: float | None = None,
    on_duplicates: Callable[[str], None] | None = None,
) -> list[SlideJob]:
    """Expand slide paths and manifests (``.csv`` with a ``path`` column) into jobs with unique ids.

    Manifest paths are resolved inside ``data_root`` (default: the manifest's folder) and may not
    escape it; optional ``slide_id``/``id`` and ``slide_mpp``/``mpp`` columns are honoured.
    ``slide_mpp`` applies to slides without their own. A slide named more than once (the same file
    after resolving the path) is processed once, as its first mention; ``on_duplicates`` (default:
    :func:`warnings.warn`) is told so once, with the repeated files.
    """
    used: set[str] = set()
    jobs: list[SlideJob] = []
    seen: dict[str, str] = {}
    repeated: dict[str, int] = {}
    root = Path(data_root) if data_root is not None else None

    def first_time(path: Path) -> bool:
        key = _path_key(path)
        if key in seen:
            repeated[seen[key]] = repeated.get(seen[key], 1) + 1
            return False
        seen[key] = str(path)
        return True

    for item in inputs:
        p = Path(item)
        if p.suffix.lower() == ".csv":
            if not p.is_file():
                raise ManifestError("manifest not found", path=p)
            for full, sid, mpp in _read_manifest_paths(p, root):
                if not first_time(full):
                    continue
                name = sid if sid and sid not in used else _slide_id(full, used)
                used.add(name)
                jobs.append(SlideJob(str(full), name, mpp if mpp is not None else slide_mpp))
        else:
            if root is not None and not p.is_absolute() and not p.exists():
                p = root / p
            if first_time(p):
                jobs.append(SlideJob(str(p), _slide_id(p, used), slide_mpp))
    if repeated:
        shown = ", ".join(f"{path} ({n} times)" for path, n in list(repeated.items())[:3])
        more = f" and {len(repeated) - 3} more" if len(repeated) > 3 else ""
        message = (
            f"{sum(repeated.values()) - len(repeated)} input(s) name a slide already listed: "
            f"{shown}{more}; each slide is computed once"
        )
        (on_duplicates or _warn)(message)
    return jobs


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)
