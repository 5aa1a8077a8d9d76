"""Diff of two audits: findings paired by their stable ``id``, severity up/down/same, value change, new/gone.

The audit's finding ids are stable across runs (``artifact.relevance:pen:blue``), so the audit of a
changed model (pruned, mitigated) is compared with the original's finding by finding. Works on the
finding dicts of ``report.json`` (or of any list with ``id``, ``severity`` and ``value``), so it
needs neither model nor data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pathxai.audit.findings import SEVERITIES
from pathxai.errors import PathXAIError

__all__ = [
    "CHANGES",
    "DIFF_SCHEMA",
    "FindingChange",
    "diff_findings",
    "diff_reports",
    "diff_table",
    "load_report",
]

DIFF_SCHEMA = "pathxai.audit-diff/1"
#: Kinds of change, in the order the table lists them (what got worse first).
CHANGES = ("up", "new", "down", "gone", "same")
Change = Literal["up", "down", "same", "new", "gone"]


@dataclass(frozen=True)
class FindingChange:
    """One finding id in the before and/or after audit.

    Attributes
    ----------
    id, check, family
        The finding's identity (from the after audit when present there, else the before one).
    change
        ``up``/``down`` (severity rose/fell), ``same`` (equal severity), ``new`` (only after),
        ``gone`` (only before).
    severity_before, severity_after
        Severities (``None`` on the side the finding is missing from).
    value_before, value_after
        Metric values (``None`` when missing or not a number).
    delta
        ``value_after - value_before`` when both are finite numbers, else ``None``.
    """

    id: str
    check: str
    family: str | None
    change: Change
    severity_before: str | None
    severity_after: str | None
    value_before: float | None
    value_after: float | None
    delta: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _rank(severity: Any) -> int:
    if severity not in SEVERITIES:
        raise PathXAIError(f"audit diff: unknown severity {severity!r} (expected one of {SEVERITIES})")
    return SEVERITIES.index(severity)


def _by_id(findings: Iterable[Mapping[str, Any]], side: str) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for f in findings:
        key = f.get("id")
        if not isinstance(key, str):
            raise PathXAIError(f"audit diff: a finding of the {side} audit has no id")
        if key in out:
            raise PathXAIError(f"audit diff: finding id {key!r} occurs twice in the {side} audit")
        out[key] = f
    return out


def _change(b: Mapping[str, Any] | None, a: Mapping[str, Any] | None) -> Change:
    if b is None:
        return "new"
    if a is None:
        return "gone"
    rb, ra = _rank(b.get("severity")), _rank(a.get("severity"))
    return "up" if ra > rb else "down" if ra < rb else "same"


def diff_findings(
    before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]
) -> list[FindingChange]:
    """Pair two lists of findings by ``id`` and say how each changed.

    Parameters
    ----------
    before, after
        Finding dicts (``report.json``'s ``findings``) with at least ``id`` and ``severity``;
        ``check``, ``family`` and ``value`` are used when present.

    Returns
    -------
    list[FindingChange]
        One entry per id of either side, sorted by kind of change (:data:`CHANGES`), then by the
        larger severity (highest first), then by id.

    Raises
    ------
    PathXAIError
        A finding without an id, an id twice on one side, or an unknown severity.
    """
    b_by, a_by = _by_id(before, "before"), _by_id(after, "after")
    out = []
    for key in sorted(set(b_by) | set(a_by)):
        b, a = b_by.get(key), a_by.get(key)
        ref = a if a is not None else b
        assert ref is not None
        vb = _number(b.get("value")) if b is not None else None
        va = _number(a.get("value")) if a is not None else None
        out.append(
            FindingChange(
                id=key,
                check=str(ref.get("check", key.split(":")[0])),
                family=ref.get("family"),
                change=_change(b, a),
                severity_before=None if b is None else b.get("severity"),
                severity_after=None if a is None else a.get("severity"),
                value_before=vb,
                value_after=va,
                delta=va - vb if va is not None and vb is not None else None,
            )
        )

    def order(c: FindingChange) -> tuple[int, int, str]:
        worst = max(_rank(s) for s in (c.severity_before, c.severity_after) if s is not None)
        return CHANGES.index(c.change), -worst, c.id

    return sorted(out, key=order)


def load_report(path: str | Path) -> dict[str, Any]:
    """Read an audit's ``report.json`` (``path`` is the file or its directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise PathXAIError(f"no audit report at {p}") from None
    except json.JSONDecodeError as exc:
        raise PathXAIError(f"{p} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("findings"), list):
        raise PathXAIError(f"{p} has no 'findings' list (not a pathxai audit report?)")
    return doc


def _model(doc: Mapping[str, Any]) -> dict[str, Any]:
    model = doc.get("model") or {}
    return {k: model.get(k) for k in ("source", "arch", "weights_sha256")}


def _changed_keys(b: Mapping[str, Any], a: Mapping[str, Any]) -> list[str]:
    return [f"{k}: {b.get(k)} → {a.get(k)}" for k in sorted(set(b) | set(a)) if b.get(k) != a.get(k)]


def diff_reports(
    before: Mapping[str, Any], after: Mapping[str, Any], *, before_name: str = "", after_name: str = ""
) -> dict[str, Any]:
    """The diff document of two audit reports (``report.json`` dicts).

    Parameters
    ----------
    before, after
        The two reports.
    before_name, after_name
        Where they came from (recorded in the document).

    Returns
    -------
    dict
        ``schema``, ``before``/``after`` (name, model, settings, summary), ``counts`` per kind of
        change, ``notes`` (differences of cohort or settings that make the diff less comparable),
        and ``changes`` (:meth:`FindingChange.to_dict` each).
    """
    changes = diff_findings(before["findings"], after["findings"])
    notes = []
    cb, ca = before.get("cohort") or {}, after.get("cohort") or {}
    if cb.get("manifest_sha256") != ca.get("manifest_sha256") or cb.get("n_items") != ca.get("n_items"):
        notes.append("the two audits ran on different cohorts (manifest or item count differ)")
    tb, ta = before.get("thresholds") or {}, after.get("thresholds") or {}
    for part in ("settings", "rules"):
        changed = _changed_keys(tb.get(part) or {}, ta.get(part) or {})
        if changed:
            notes.append(f"the two audits ran with different {part} ({'; '.join(changed)})")

    def side(name: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        return {"name": name, "model": _model(doc), "summary": doc.get("summary")}

    return {
        "schema": DIFF_SCHEMA,
        "before": side(before_name, before),
        "after": side(after_name, after),
        "counts": {k: sum(c.change == k for c in changes) for k in CHANGES},
        "notes": notes,
        "changes": [c.to_dict() for c in changes],
    }


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def diff_table(changes: Sequence[Mapping[str, Any]], *, include_same: bool = True) -> str:
    """A plain-text table of :func:`diff_findings` entries (dicts), one line per finding.

    Parameters
    ----------
    changes
        ``diff_reports(...)["changes"]`` or ``[c.to_dict() for c in diff_findings(...)]``.
    include_same
        List findings whose severity did not change too (their value may have).
    """
    head = ("change", "finding", "severity", "value", "Δ value")
    rows = [
        (
            c["change"],
            c["id"],
            f"{c['severity_before'] or '–'} → {c['severity_after'] or '–'}",
            f"{_fmt(c['value_before'])} → {_fmt(c['value_after'])}",
            "–" if c["delta"] is None else f"{c['delta']:+.4g}",
        )
        for c in changes
        if include_same or c["change"] != "same"
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]
    ]
    return "\n".join(lines)
