"""``pathxai manifest validate``: check a data manifest's schema, files and checksums."""

from __future__ import annotations

import argparse
import sys

from pathxai.cli._common import command


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``manifest`` command group."""
    p = sub.add_parser("manifest", help="work with data manifests (validate)")
    msub = p.add_subparsers(dest="manifest_command", metavar="ACTION", required=True)
    v = command(
        msub, run_validate, "validate", help="check schema, duplicate ids, files, checksums and labels"
    )
    v.add_argument("manifest", help="CSV manifest")
    v.add_argument(
        "--data-root",
        default=None,
        help="directory the paths are relative to (default: the manifest's folder)",
    )
    v.add_argument("--no-checksums", action="store_true", help="skip sha256 verification")


def run_validate(args: argparse.Namespace) -> int:
    """Print every problem; exit 1 if any."""
    from pathxai.manifest import validate

    problems = validate(args.manifest, args.data_root, checksums=not args.no_checksums)
    for prob in problems:
        print(prob.format(args.manifest), file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in {args.manifest}", file=sys.stderr)
        return 1
    print(f"{args.manifest}: OK")
    return 0
