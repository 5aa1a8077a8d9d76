"""Is a heatmap output folder whole? Every store verified, every summary and export present and readable.

``pathxai verify DIR`` (:mod:`pathxai.cli.verify`) prints :func:`verify_folder`'s verdict. A store is
checked by :func:`pathxai.store.verify.verify_store`; beside it the summary ``<id>.json`` must parse
and the exports the run wrote must be there and readable (the exports of a slide are the ones its
summary timed, and any kind present for another slide of the folder). An unfinished
``<id>.partial.h5`` and the slides listed in ``failures.json`` make the folder incomplete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pathxai.heatmap.settings import EXPORTS
from pathxai.store.verify import StoreCheck, verify_store

__all__ = ["FolderCheck", "verify_folder"]

#: What to do about a missing or damaged summary or export.
RERUN = "rerun the heatmap command on this folder: it writes what a complete store lacks"


@dataclass(frozen=True)
class FolderCheck:
    """Verdict on a folder: one line per bad file (``problems``), plus remarks that do not fail it."""

    directory: Path
    stores: tuple[StoreCheck, ...]
    problems: tuple[tuple[Path, str], ...]
    notes: tuple[tuple[Path, str], ...]

    @property
    def ok(self) -> bool:
        """Nothing wrong was found."""
        return not self.problems


def _export_readable(path: Path) -> str | None:
    """``None`` if the export opens, else why not."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
        if path.suffix == ".geojson":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".png":
            from PIL import Image

            with Image.open(path) as im:
                im.load()
        elif path.suffix == ".tif":
            import tifffile

            with tifffile.TiffFile(path) as tif:
                for page in tif.pages:
                    page.asarray()  # type: ignore[union-attr]
    except Exception as exc:  # any reader's failure means a damaged file
        return f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def _expected_exports(summary: dict[str, object], seen: set[str]) -> set[str]:
    timings = summary.get("timings")
    timed = {e for e in EXPORTS if isinstance(timings, dict) and f"{e}_s" in timings}
    return timed | seen


def verify_folder(directory: str | Path) -> FolderCheck:
    """Check a ``pathxai heatmap`` output folder.

    Parameters
    ----------
    directory
        The ``--out`` folder of a heatmap run.

    Returns
    -------
    FolderCheck
        Every store's check and one ``(file, what is wrong and what to do)`` per bad file.
    """
    d = Path(directory)
    problems: list[tuple[Path, str]] = []
    notes: list[tuple[Path, str]] = []
    if not d.is_dir():
        return FolderCheck(d, (), ((d, "not a directory"),), ())
    finals = sorted(
        p for p in d.glob("*.h5") if not p.name.endswith(".partial.h5") and not p.name.startswith(".")
    )
    partials = sorted(d.glob("*.partial.h5"))
    seen = {e for e in EXPORTS if any(d.glob(f"*.{e}"))}
    stores: list[StoreCheck] = []
    for path in finals:
        check = verify_store(path)
        stores.append(check)
        problems += [(path, p) for p in check.problems]
        notes += [(path, n) for n in check.notes]
        slide_id = path.name[: -len(".h5")]
        spath = d / f"{slide_id}.json"
        summary: dict[str, object] = {}
        try:
            summary = dict(json.loads(spath.read_text(encoding="utf-8")))
        except FileNotFoundError:
            problems.append((spath, f"summary missing ({RERUN})"))
        except (OSError, ValueError, TypeError) as exc:
            problems.append((spath, f"summary unreadable ({type(exc).__name__}) ({RERUN})"))
        for ext in sorted(_expected_exports(summary, seen)):
            epath = d / f"{slide_id}.{ext}"
            if not epath.exists():
                problems.append((epath, f"export missing ({RERUN})"))
            elif (why := _export_readable(epath)) is not None:
                problems.append((epath, f"export {why} (delete it, then {RERUN})"))
    for path in partials:
        problems.append((path, "unfinished run (rerun the heatmap command to finish it)"))
    for tmp in sorted(d.glob(".*.part*")):
        notes.append((tmp, "temporary file of an interrupted run (the next run removes it)"))
    fpath = d / "failures.json"
    if fpath.exists():
        try:
            report = json.loads(fpath.read_text(encoding="utf-8"))
            for f in report.get("failures", []):
                problems.append((fpath, f"slide {f.get('slide_id')} failed: {f.get('error')}"))
            for s in report.get("stopped_out_of_space", []):
                problems.append(
                    (fpath, f"slide {s.get('slide_id')} not run: the disk was full (rerun to resume)")
                )
        except (OSError, ValueError, AttributeError) as exc:
            problems.append((fpath, f"unreadable ({type(exc).__name__})"))
    if not finals and not partials:
        problems.append((d, "no heatmap store in this folder (is it a 'pathxai heatmap --out' folder?)"))
    return FolderCheck(d, tuple(stores), tuple(problems), tuple(notes))
