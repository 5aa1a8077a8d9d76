"""Helpers shared by CLI commands: progress bars and common options."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tqdm import tqdm


def progress_bar(total: int | None, desc: str, unit: str = "tile", **kwargs: Any) -> tqdm:
    """A tqdm progress bar on stderr, quiet when stderr is not a terminal and CI is set."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=True, **kwargs)


def positive_float(text: str) -> float:
    """Argparse type: a float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def positive_int(text: str) -> int:
    """Argparse type: an int > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """Argparse type: an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """Argparse type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def plausible_mpp(text: str) -> float:
    """Argparse type: a resolution in µm/px inside the plausible range of slide scanners."""
    from pathxai.slide.resolution import PLAUSIBLE_MPP, is_plausible

    value = positive_float(text)
    if not is_plausible(value):
        raise argparse.ArgumentTypeError(
            f"{text} µm/px is not a plausible resolution "
            f"(expected {PLAUSIBLE_MPP[0]}-{PLAUSIBLE_MPP[1]}; e.g. 0.25 for 40x, 0.5 for 20x)"
        )
    return value


def add_slide_mpp(parser: argparse.ArgumentParser) -> None:
    """Add ``--slide-mpp``: the level-0 resolution override for slides with missing or bogus metadata."""
    parser.add_argument(
        "--slide-mpp",
        type=plausible_mpp,
        default=None,
        metavar="UM",
        help="level-0 µm/px of the slide, overriding its metadata (needed when the metadata has no "
        "plausible mpp, e.g. 0.5 for a 20x scan)",
    )
