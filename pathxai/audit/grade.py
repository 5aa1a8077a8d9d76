"""One helper turns a check's measured value into a graded :class:`BiasFinding`; stable finding ids.

Every check calls :func:`graded` instead of grading and building the finding itself, so the rule
lookup, the "not significant: info" gate and severity caps are written once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pathxai.audit.findings import SEVERITIES, BiasFinding, Family, Region, Severity, Thresholds

__all__ = ["assign_ids", "graded"]


def assign_ids(findings: Sequence[BiasFinding]) -> tuple[BiasFinding, ...]:
    """Give every finding its stable ``id``: the check name, ``check#1``, ``check#2`` ... where a name repeats."""
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.check] = counts.get(f.check, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for f in findings:
        n = seen[f.check] = seen.get(f.check, 0) + 1
        out.append(dataclasses.replace(f, id=f.check if counts[f.check] == 1 else f"{f.check}#{n}"))
    return tuple(out)


def graded(
    thresholds: Thresholds,
    family: Family,
    check: str,
    metric: str,
    value: float | None,
    message: str | Callable[[Severity], str] = "",
    *,
    grade: bool = True,
    grade_value: float | None = None,
    cap: Severity | None = None,
    items: Sequence[str] = (),
    regions: Sequence[Region] = (),
    details: Mapping[str, Any] | None = None,
) -> BiasFinding:
    """Grade ``value`` under ``check``'s rule and build the :class:`BiasFinding` (the one place that does).

    Parameters
    ----------
    thresholds
        Severity rules in force.
    family, check, metric, value
        As in :class:`BiasFinding`.
    message
        The message, or a function of the severity that writes it.
    grade
        ``False``: the finding is ``info`` whatever the value (not significant, layout only ...).
    grade_value
        Value graded instead of ``value`` (e.g. a large stand-in for an infinite ratio).
    cap
        Highest severity for this finding; above it the severity and threshold of ``cap`` are used.
    items, regions, details
        The evidence.

    Returns
    -------
    BiasFinding
    """
    sev: Severity
    thr: float | None
    sev, thr = (
        thresholds.grade(check, value if grade_value is None else grade_value) if grade else ("info", None)
    )
    if cap is not None and SEVERITIES.index(sev) > SEVERITIES.index(cap):
        sev, thr = cap, getattr(thresholds.rule(check), cap)
    return BiasFinding(
        family=family,
        check=check,
        metric=metric,
        value=value,
        threshold=thr,
        severity=sev,
        message=message(sev) if callable(message) else message,
        items=tuple(items),
        regions=tuple(regions),
        details=dict(details or {}),
    )
