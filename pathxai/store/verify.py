"""Is a heatmap store whole? Complete, readable to its last byte, and its checksums right.

:func:`verify_store` reads every dataset of a complete store (HDF5 verifies each chunk's Fletcher-32
checksum on the way) and compares the sha256 of every dataset and of the attributes with those
recorded when the store was finalised (:meth:`~pathxai.store.heatmap.HeatmapStore.finalize`). It is
what ``pathxai verify`` runs per store; a run's resume only checks that a store opens and matches
(it need not find a flipped bit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pathxai.errors import StoreError
from pathxai.store.heatmap import HeatmapStore, attrs_digest
from pathxai.store.layout import dataset_digest

__all__ = ["StoreCheck", "verify_store"]

#: What to do about a damaged store.
REBUILD = "delete it, or rerun the heatmap command with --overwrite, to rebuild it"


@dataclass(frozen=True)
class StoreCheck:
    """The verdict on one store: ``problems`` make it bad; ``notes`` do not."""

    path: Path
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    n_datasets: int = 0

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def _dataset_names(store: HeatmapStore) -> list[str]:
    names: list[str] = []
    store.h5.visit(lambda name: names.append(name) if hasattr(store.h5[name], "shape") else None)
    return sorted(names)


def verify_store(path: str | Path) -> StoreCheck:
    """Check one complete heatmap store.

    Parameters
    ----------
    path
        The ``<id>.h5`` file.

    Returns
    -------
    StoreCheck
        Each problem is one line saying what is wrong (and, at the end, what to do).
    """
    path = Path(path)
    problems: list[str] = []
    notes: list[str] = []
    try:
        store = HeatmapStore.open(path)
    except StoreError as exc:
        return StoreCheck(path, (exc.message + (f" ({exc.hint})" if exc.hint else ""),))
    n = 0
    with store:
        try:
            attrs = store.attrs
            status = attrs.get("status")
            if status != "complete":
                problems.append(f"status {status!r}, not complete (rerun the heatmap command to finish it)")
            raw = attrs.get("checksums")
            recorded: dict[str, str] = {}
            attrs_sha: str | None = None
            if raw:
                try:
                    parsed = json.loads(raw)
                    recorded = dict(parsed["datasets"])
                    attrs_sha = str(parsed["attrs"])
                except (ValueError, KeyError, TypeError):
                    problems.append(f"its checksums attribute is damaged ({REBUILD})")
            elif status == "complete":
                notes.append("no checksums recorded (written by an older pathxai): only read through")
            if attrs_sha is not None and attrs_digest(store.h5.attrs) != attrs_sha:
                problems.append(f"its attributes do not match their checksum: damaged ({REBUILD})")
            names = _dataset_names(store)
            for name in sorted(set(recorded) - set(names)):
                problems.append(f"dataset /{name} is missing ({REBUILD})")
            for name in names:
                try:
                    digest = dataset_digest(store.h5[name])
                except (OSError, RuntimeError, ValueError) as exc:  # Fletcher-32 mismatch, bad chunk index
                    first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
                    problems.append(f"dataset /{name} cannot be read ({first.strip()}): damaged ({REBUILD})")
                    continue
                n += 1
                if name in recorded and recorded[name] != digest:
                    problems.append(f"dataset /{name} does not match its checksum: damaged ({REBUILD})")
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:  # damaged metadata
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            problems.append(f"damaged HDF5 structure ({first.strip()}) ({REBUILD})")
    return StoreCheck(path, tuple(problems), tuple(notes), n)
