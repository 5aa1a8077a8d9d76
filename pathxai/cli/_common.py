"""Helpers shared by CLI commands: argument types, common options, progress bars, command lines.

Nothing heavy is imported at module level: ``pathxai --help`` builds every command's parser, so a
command module and this one import only the standard library until a command runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tqdm import tqdm

T = TypeVar("T", int, float)


def progress_bar(total: int | None, desc: str, unit: str = "tile", **kwargs: Any) -> tqdm:
    """A tqdm progress bar on stderr, quiet when stderr is not a terminal and CI is set."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=True, **kwargs)


def checked(
    convert: Callable[[str], T], ok: Callable[[T], bool], not_a_number: str, out_of_range: str
) -> Callable[[str], T]:
    """An argparse type: ``convert`` the text, then require ``ok(value)``.

    Parameters
    ----------
    convert
        ``int`` or ``float``.
    ok
        The range test.
    not_a_number
        What was expected, said when the text does not convert (``expected <this>, got 'x'``).
    out_of_range
        The message when ``ok`` fails; ``{text}`` is replaced by the argument.

    Returns
    -------
    Callable[[str], T]
        The type function; it raises :class:`argparse.ArgumentTypeError` with the message.
    """

    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {not_a_number}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(out_of_range.format(text=text))
        return value

    return parse


positive_float = checked(float, lambda v: v > 0, "a number", "expected a positive number, got {text}")
non_negative_float = checked(
    float, lambda v: not v < 0, "a number >= 0", "expected a number >= 0, got {text}"
)
positive_int = checked(int, lambda v: v > 0, "an integer", "expected a positive integer, got {text}")
non_negative_int = checked(int, lambda v: v >= 0, "an integer", "expected an integer >= 0, got {text}")
fraction = checked(
    float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]", "expected a number in [0, 1], got {text}"
)


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


#: ``--slide-mpp`` help for commands whose manifests may give each slide its own resolution.
SLIDES_WITHOUT_MPP = (
    "slides whose manifest row has no 'mpp', overriding their metadata (needed when it has no "
    "plausible mpp, e.g. 0.5 for a 20x scan)"
)

#: ``--slide-mpp`` help for commands that read plain images (the old spelling was ``--native-mpp``).
IMAGES_WITHOUT_MPP = "images whose manifest row has no 'mpp'"


def add_slide_mpp(
    parser: argparse.ArgumentParser,
    *aliases: str,
    type: Callable[[str], float] = plausible_mpp,
    what: str = "the slide, overriding its metadata (needed when the metadata has no plausible mpp, "
    "e.g. 0.5 for a 20x scan)",
) -> None:
    """Add ``--slide-mpp`` (dest ``slide_mpp``): the level-0 / native µm/px of the input.

    Parameters
    ----------
    parser
        The command's parser.
    aliases
        Older spellings that keep working (``--native-mpp``).
    type
        The argparse type (plausible scanner resolutions by default).
    what
        The end of the help text: whose resolution it is and when it applies.
    """
    parser.add_argument(
        "--slide-mpp",
        *aliases,
        dest="slide_mpp",
        type=type,
        default=None,
        metavar="UM",
        help=f"level-0 (native) µm/px of {what}",
    )


def add_image_mpp(parser: argparse.ArgumentParser) -> None:
    """Add ``--slide-mpp`` (alias ``--native-mpp``) of the plain images of a manifest (any positive µm/px)."""
    add_slide_mpp(parser, "--native-mpp", type=positive_float, what=IMAGES_WITHOUT_MPP)


def add_inputs(
    parser: argparse.ArgumentParser,
    manifest_help: str | None = None,
    model_help: str | None = "'default' (the committed model) or a model directory",
) -> None:
    """Add ``--manifest`` (required, unless ``manifest_help`` is ``None``), ``--data-root`` and ``--model``."""
    if manifest_help is not None:
        parser.add_argument("--manifest", required=True, help=manifest_help)
    parser.add_argument(
        "--data-root", default=None, help="directory the manifest paths are relative to (default: its folder)"
    )
    if model_help is not None:
        parser.add_argument("--model", default="default", help=model_help)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """Add ``--quiet`` (no progress bars)."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def pick(args: argparse.Namespace, *names: str, **renamed: str) -> dict[str, Any]:
    """Keyword arguments taken from parsed options.

    Parameters
    ----------
    args
        The parsed namespace.
    names
        Options passed under their own name.
    renamed
        ``keyword="option"``: options passed under another keyword.

    Returns
    -------
    dict[str, Any]
        ``{name: args.name, ..., keyword: args.option, ...}``.
    """
    out = {n: getattr(args, n) for n in names}
    out.update({k: getattr(args, v) for k, v in renamed.items()})
    return out


def command_line(name: str, args: argparse.Namespace, argv: list[str] | None = None) -> str:
    """The command as typed (``pathxai NAME ...``), or rebuilt from the options when called in code.

    Parameters
    ----------
    name
        The sub-command (``train``, ``prune``).
    args
        The parsed options (used when ``argv`` does not hold ``name``).
    argv
        The process arguments without the program (default ``sys.argv[1:]``).

    Returns
    -------
    str
        A shell-quoted command line, recorded in model cards.
    """
    argv = sys.argv[1:] if argv is None else argv
    if name in argv:
        return shlex.join(["pathxai", *argv[argv.index(name) :]])
    opts = [
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {shlex.quote(str(v))}")
        for k, v in sorted(vars(args).items())
        if k not in ("func", "command", "debug") and v not in (None, False)
    ]
    return " ".join([f"pathxai {name}", *opts])


def fail(command: str, message: str) -> int:
    """Print ``pathxai COMMAND: error: MESSAGE`` on stderr and return the error exit code (2)."""
    print(f"pathxai {command}: error: {message}", file=sys.stderr)
    return 2


def command(
    sub: argparse._SubParsersAction, func: Callable[[argparse.Namespace], int], name: str, **kwargs: Any
) -> argparse.ArgumentParser:
    """Add the sub-command ``name`` that runs ``func(args)``; ``kwargs`` go to ``add_parser`` (help, ...)."""
    p: argparse.ArgumentParser = sub.add_parser(name, **kwargs)
    p.set_defaults(func=func)
    return p
