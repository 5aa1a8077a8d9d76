"""``pathxai audit-diff``: compare two audits' report.json finding by finding (severity, value, new/gone)."""

from __future__ import annotations

import argparse

HELP = "compare two audits (e.g. before/after pruning): severity up/down, value change, new/gone findings"
DESCRIPTION = (
    "Pair the findings of two audit reports by their stable id and print, per finding, whether its "
    "severity rose (up), fell (down) or stayed (same), how its value changed, and which findings are "
    "new in AFTER or gone from it. BEFORE and AFTER are report.json files or audit output directories."
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``audit-diff`` command."""
    from pathxai.cli._common import command

    p = command(sub, run, "audit-diff", help=HELP, description=DESCRIPTION)
    p.add_argument("before", metavar="BEFORE", help="the reference audit (report.json or its directory)")
    p.add_argument("after", metavar="AFTER", help="the audit compared with it")
    p.add_argument("--out", default=None, metavar="JSON", help="also write the diff as JSON here")
    p.add_argument(
        "--changed-only", action="store_true", help="list only findings whose severity changed, new or gone"
    )


def run(args: argparse.Namespace) -> int:
    """Print the diff table and the counts; write the JSON when asked."""
    from pathxai.audit.diff import diff_reports, diff_table, load_report
    from pathxai.jsonio import write_json

    doc = diff_reports(
        load_report(args.before),
        load_report(args.after),
        before_name=str(args.before),
        after_name=str(args.after),
    )
    print(diff_table(doc["changes"], include_same=not args.changed_only))
    print(", ".join(f"{k} {v}" for k, v in doc["counts"].items()))
    for note in doc["notes"]:
        print(f"note: {note}")
    if args.out:
        write_json(args.out, doc)
        print(f"written: {args.out}")
    return 0
