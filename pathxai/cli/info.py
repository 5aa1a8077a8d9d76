"""``pathxai info SLIDE``: what a slide is, at which resolution, and how much tissue it has."""

from __future__ import annotations

import argparse

from pathxai.cli._common import add_slide_mpp, command


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``info`` command."""
    p = command(sub, run, "info", help="describe a slide: vendor, size, levels, mpp and its source, tissue")
    p.add_argument("slide", help="slide file (SVS, TIFF, NDPI, MRXS, ... or a PNG/JPEG image)")
    add_slide_mpp(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--no-tissue", action="store_true", help="skip tissue detection")


def run(args: argparse.Namespace) -> int:
    """Print the slide's description."""
    from pathxai.jsonio import dumps_json
    from pathxai.slide.info import slide_info

    info = slide_info(args.slide, slide_mpp=args.slide_mpp, tissue=not args.no_tissue)
    if args.json:
        print(dumps_json(info), end="")
        return 0
    print(f"slide:      {info['path']}")
    print(f"vendor:     {info['vendor']}")
    print(f"size:       {info['width']} x {info['height']} px (level 0)")
    print(f"levels:     {len(info['levels'])}")
    for lv in info["levels"]:
        print(f"  level {lv['level']}: {lv['width']} x {lv['height']}  downsample {lv['downsample']}")
    mpp = "unknown" if info["mpp"] is None else f"{info['mpp']:.4g} µm/px"
    print(f"mpp:        {mpp}  [{info['mpp_source']}: {info['mpp_note']}]")
    if "mpp_suggestion" in info:
        sug = info["mpp_suggestion"]
        print(f"mpp guess:  {sug['text']}")
        if sug["mpp"] is not None:
            print(f"            not used: check it, then pass --slide-mpp {sug['mpp']:.2f} to use it")
    if info["objective_power"]:
        print(f"objective:  {info['objective_power']}x")
    print(f"associated: {', '.join(info['associated_images']) or '-'}")
    if "tissue_fraction" in info:
        if info["tissue_fraction"] is None:
            print(f"tissue:     unknown ({info['tissue_note']})")
        else:
            print(f"tissue:     {100 * info['tissue_fraction']:.1f}% of the slide area")
    return 0
