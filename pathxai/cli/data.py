"""``pathxai data list`` / ``pathxai data fetch NAME``: public dataset files, verified and cached."""

from __future__ import annotations

import argparse
import sys

from pathxai.cli._common import command


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _list(args: argparse.Namespace) -> int:
    from pathxai.data import builtin_datasets, cache_dir

    for ds in builtin_datasets().values():
        print(f"{ds.name}: {ds.description}")
        if ds.licence:
            print(f"  licence: {ds.licence}")
        for f in ds.files:
            size = f" ({f.size / 1e6:.1f} MB)" if f.size else ""
            print(f"  {f.name}{size} sha256 {f.sha256}")
            for s in f.sources:
                print(f"    - {s.describe()}")
    print(f"cache: {cache_dir()}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from pathxai.data import fetch

    paths = fetch(args.name, cache=args.cache, timeout=args.timeout, log=_log)
    for path in paths.values():
        print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command with ``list`` and ``fetch``."""
    p = subparsers.add_parser("data", help="list and fetch public dataset files (sha256-verified, cached)")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    command(sub, _list, "list", help="list the built-in datasets, their files and sources")
    pf = command(sub, _fetch, "fetch", help="obtain a dataset's files, trying each source in order")
    pf.add_argument("name", help="dataset name (see `pathxai data list`) or a definition .json file")
    pf.add_argument("--cache", default=None, help="cache folder (default $PATHXAI_CACHE or ~/.cache/pathxai)")
    pf.add_argument("--timeout", type=float, default=30.0, help="network timeout per source, seconds")
