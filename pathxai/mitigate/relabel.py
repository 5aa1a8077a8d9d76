"""Label findings: a list of candidates for a person to confirm, never applied without their file.

``pathxai mitigate`` on a ``labels.*`` finding writes ``relabel_candidates.csv`` (id, current label,
suggested label, the evidence) and stops. A person copies the rows they agree with into a
confirmation file, sets ``confirm`` to ``yes`` on each, and passes it with ``--confirm-labels``; only
those rows change, and only then is a model fine-tuned on the corrected labels.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pathxai.atomic import write_text_atomic
from pathxai.errors import ManifestError

__all__ = ["CANDIDATES_FILE", "candidates", "read_confirmations", "write_candidates"]

CANDIDATES_FILE = "relabel_candidates.csv"
_FIELDS = ("id", "label", "suggested_label", "tumour_probability", "finding", "confirm")


def candidates(finding: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Relabelling candidates of a ``labels.*`` finding (its ``details.candidates``, else its items)."""
    rows = []
    listed = (finding.get("details") or {}).get("candidates")
    if listed:
        for c in listed:
            label = int(c.get("label")) if c.get("label") is not None else None
            rows.append(
                {
                    "id": str(c["id"]),
                    "label": "" if label is None else label,
                    "suggested_label": "" if label is None else 1 - label,
                    "tumour_probability": c.get("tumour_probability", ""),
                }
            )
    else:
        rows = [
            {"id": str(i), "label": "", "suggested_label": "", "tumour_probability": ""}
            for i in finding.get("items", [])
        ]
    for r in rows:
        r["finding"] = finding.get("id", finding.get("check", ""))
        r["confirm"] = ""
    return rows


def write_candidates(rows: Sequence[Mapping[str, Any]], out: Path) -> Path:
    """Write the candidates CSV (``confirm`` left empty for the person) to ``out``."""
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(_FIELDS))
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in _FIELDS})
    path = out / CANDIDATES_FILE
    write_text_atomic(path, buf.getvalue())
    return path


def read_confirmations(path: str | Path, known_ids: Sequence[str]) -> dict[str, int]:
    """``{id: new label}`` of the rows a person confirmed (``confirm`` = yes/y/1/true).

    Raises
    ------
    ManifestError
        If the file is unreadable, lacks the ``id``/``suggested_label``/``confirm`` columns, names an
        unknown id, or a confirmed row has no 0/1 label.
    """
    p = Path(path)
    try:
        with p.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ManifestError(f"cannot read the confirmation file ({exc.strerror})", path=p) from exc
    need = {"id", "suggested_label", "confirm"}
    if rows and not need <= set(rows[0]):
        raise ManifestError(f"the confirmation file needs the columns {sorted(need)}", path=p)
    known = set(known_ids)
    out: dict[str, int] = {}
    for n, r in enumerate(rows, start=2):
        if str(r.get("confirm", "")).strip().lower() not in ("yes", "y", "1", "true"):
            continue
        if r["id"] not in known:
            raise ManifestError(f"line {n}: id {r['id']!r} is not in the training manifest", path=p)
        if str(r["suggested_label"]).strip() not in ("0", "1"):
            raise ManifestError(f"line {n}: confirmed row {r['id']!r} needs suggested_label 0 or 1", path=p)
        out[r["id"]] = int(str(r["suggested_label"]).strip())
    return out
