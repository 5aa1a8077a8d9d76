"""The manifest schema: column aliases, tumour label spellings and the parsed types.

See :mod:`pathxai.manifest` for the column table. Layer 0.5: no torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


def header_map(columns: Sequence[str]) -> dict[str, str]:
    """Canonical column -> the spelling of it found in ``columns`` (first alias present wins)."""
    present = set(columns)
    out: dict[str, str] = {}
    for canon, names in ALIASES.items():
        for n in names:
            if n in present:
                out[canon] = n
                break
    return out
