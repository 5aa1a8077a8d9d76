"""A slide described for ``pathxai info``: vendor, size, levels, resolution and its source, tissue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pathxai.slide import detect_tissue, open_slide

__all__ = ["slide_info"]


def slide_info(path: str | Path, slide_mpp: float | None = None, tissue: bool = True) -> dict[str, Any]:
    """Describe a slide: vendor, size, levels, resolution and its source, associated images, tissue.

    When the metadata gives no resolution, ``mpp_suggestion`` holds the µm/px the size of its nuclei
    suggests (:mod:`pathxai.slide.nuclei_mpp`); ``mpp`` stays ``None``.

    Parameters
    ----------
    path
        Slide file.
    slide_mpp
        Level-0 µm/px override.
    tissue
        Also detect tissue (needs a known resolution; skipped with a note otherwise).

    Returns
    -------
    dict
        JSON-serialisable description.
    """
    with open_slide(path, mpp=slide_mpp) as slide:
        res = slide.resolution
        info: dict[str, Any] = {
            "path": str(path),
            "vendor": slide.vendor,
            "width": slide.dimensions[0],
            "height": slide.dimensions[1],
            "levels": [
                {"level": i, "width": w, "height": h, "downsample": round(d, 4)}
                for i, ((w, h), d) in enumerate(
                    zip(slide.level_dimensions, slide.level_downsamples, strict=True)
                )
            ],
            "mpp": res.mpp,
            "mpp_source": res.source,
            "mpp_note": res.note,
            "objective_power": slide.properties.get("openslide.objective-power"),
            "associated_images": list(slide.associated_images),
        }
        if res.mpp is None:  # a suggestion beside the metadata, never in its place
            est = slide.mpp_suggestion()
            info["mpp_suggestion"] = {
                "mpp": None if est.mpp is None else round(est.mpp, 4),
                "rel_sd": None if est.mpp is None else round(est.rel_sd, 4),
                "ci95": None
                if est.low is None or est.high is None
                else [round(est.low, 4), round(est.high, 4)],
                "n_nuclei": est.n_nuclei,
                "note": est.note,
                "text": est.describe(),
            }
        if tissue:
            if res.mpp is None:
                info["tissue_fraction"] = None
                info["tissue_note"] = "needs a resolution: pass --slide-mpp"
            else:
                mask = detect_tissue(slide)
                info["tissue_fraction"] = round(mask.fraction, 4)
                info["tissue_mask_mpp"] = round(mask.mpp, 3)
    return info
