"""Honest resolution (µm per pixel) from real, sometimes wrong, slide metadata."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Plausible level-0 resolutions for brightfield scanners, in µm per pixel. Real scans lie
#: between about 0.1 (100x oil) and 10 (very low magnification); anything else is a unit or
#: metadata bug (e.g. a generic TIFF whose resolution tag says 1000 µm/px).
PLAUSIBLE_MPP = (0.05, 20.0)

#: µm per pixel of a typical scanner at 10x objective power; mpp ≈ this / power.
MPP_AT_1X = 10.0


@dataclass(frozen=True)
class Resolution:
    """A slide's level-0 resolution and where it came from.

    Attributes
    ----------
    mpp
        µm per pixel, or ``None`` when unknown.
    source
        ``"override"``, ``"metadata"``, ``"objective-power"`` or ``"unknown"``.
    note
        Human-readable detail (what the metadata said, why it was not used).
    """

    mpp: float | None
    source: str
    note: str = ""


def is_plausible(mpp: float) -> bool:
    """Whether ``mpp`` is a plausible brightfield level-0 resolution."""
    return PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]


def _float(value: str | None) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        out = float(value)
    except ValueError:
        return None
    return out if out > 0 else None


def resolve_mpp(properties: Mapping[str, str], override: float | None = None) -> Resolution:
    """Find a slide's level-0 mpp from an override, its metadata, or its objective power.

    Parameters
    ----------
    properties
        OpenSlide-style properties (``openslide.mpp-x``, ``openslide.objective-power``, ...).
    override
        A user-given mpp, which wins over everything when plausible.

    Returns
    -------
    Resolution
        ``mpp`` is ``None`` (source ``"unknown"``) when nothing usable was found; the note
        says what was found and why it was rejected.

    Raises
    ------
    ValueError
        If ``override`` itself is not positive and plausible.
    """
    if override is not None:
        if not (override > 0 and is_plausible(override)):
            raise ValueError(
                f"mpp override {override} µm/px is outside the plausible range "
                f"{PLAUSIBLE_MPP[0]}-{PLAUSIBLE_MPP[1]}"
            )
        return Resolution(float(override), "override", "given by the user")
    notes: list[str] = []
    mx = _float(properties.get("openslide.mpp-x"))
    my = _float(properties.get("openslide.mpp-y"))
    if mx is not None:
        mpp = mx if my is None else (mx + my) / 2
        if is_plausible(mpp):
            note = "openslide.mpp-x/y"
            if my is not None and abs(mx - my) / mpp > 0.02:
                note += f" (anisotropic: x={mx}, y={my}; using the mean)"
            return Resolution(mpp, "metadata", note)
        notes.append(
            f"metadata says {mpp:g} µm/px, which is implausible for a slide scan "
            f"(expected {PLAUSIBLE_MPP[0]}-{PLAUSIBLE_MPP[1]})"
        )
    power = _float(properties.get("openslide.objective-power"))
    if power is not None:
        mpp = MPP_AT_1X / power
        if is_plausible(mpp):
            notes.append(f"approximated from objective power {power:g}x as {MPP_AT_1X:g}/{power:g} µm/px")
            return Resolution(mpp, "objective-power", "; ".join(notes))
        notes.append(f"objective power {power:g}x gives an implausible {mpp:g} µm/px")
    if not notes:
        notes.append("no mpp and no objective power in the metadata")
    return Resolution(None, "unknown", "; ".join(notes))
