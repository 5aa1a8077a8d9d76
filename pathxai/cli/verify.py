"""``pathxai verify DIR``: check that a heatmap output folder is whole (stores, checksums, exports)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pathxai.cli._common import command

HELP = "check a heatmap output folder: every store complete and readable, checksums right, exports present"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``verify`` command."""
    p = command(
        sub,
        run,
        "verify",
        help=HELP,
        description=HELP + ". Exit 0 when all is well, 1 naming each bad file and what to do.",
    )
    p.add_argument("directory", type=Path, metavar="DIR", help="the --out folder of 'pathxai heatmap'")
    p.add_argument("--quiet", action="store_true", help="print only the problems")


def run(args: argparse.Namespace) -> int:
    """Verify the folder; print one line per bad file; 0 if whole, 1 if not."""
    from pathxai.heatmap.verify import verify_folder

    result = verify_folder(args.directory)
    if not args.quiet:
        for check in result.stores:
            if check.ok:
                print(f"ok: {check.path} ({check.n_datasets} datasets read, checksums right)")
        for path, note in result.notes:
            print(f"note: {path}: {note}")
    for path, problem in result.problems:
        print(f"BAD: {path}: {problem}")
    n_bad = len({p for p, _ in result.problems})
    if result.ok:
        print(f"{args.directory}: {len(result.stores)} store(s) verified, all well")
        return 0
    print(f"{args.directory}: {n_bad} bad file(s)")
    return 1
