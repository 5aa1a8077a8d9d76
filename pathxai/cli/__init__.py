"""The ``pathxai`` command line: argument parsing, progress and one-line errors.

Each command lives in its own module under :mod:`pathxai.cli` and exposes
``register(subparsers)``; the module's parser sets ``func`` to a callable taking the parsed
namespace and returning an exit code. Domain errors (:class:`~pathxai.errors.PathXAIError`)
print one clear line and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from pathxai import __version__
from pathxai.errors import PathXAIError

#: Command modules, in the order ``pathxai --help`` lists them. A module missing from an
#: install is skipped so one broken optional command never takes the CLI down.
COMMAND_MODULES: tuple[str, ...] = (
    "info",
    "tiles",
    "data",
    "manifest",
    "model",
    "train",
    "evaluate",
    "heatmap",
    "explain_eval",
    "verify",
    "audit",
    "audit_diff",
    "prune",
    "mitigate",
    "demo",
    "view",
)

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available sub-command.

    Returns
    -------
    argparse.ArgumentParser
        The parser; each sub-parser carries ``func``.
    """
    parser = argparse.ArgumentParser(
        prog="pathxai",
        description="LRP heatmaps, bias audit and explanation-guided pruning for H&E whole-slide images.",
    )
    parser.add_argument("--version", action="version", version=f"pathxai {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"pathxai.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"pathxai.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Parameters
    ----------
    argv
        Arguments without the program name; ``sys.argv[1:]`` when ``None``.

    Returns
    -------
    int
        The process exit code (0 success, 2 error, 130 interrupted).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        code = args.func(args)
    except PathXAIError as exc:
        if args.debug:
            traceback.print_exc()
        # One line, even when a library's message (OpenSlide, h5py, torch) spans several.
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"pathxai {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        # Disk full, permission denied on an output, ...: one line, not a traceback.
        if args.debug:
            traceback.print_exc()
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"pathxai {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"pathxai {args.command}: interrupted; finished work is kept, rerun to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
