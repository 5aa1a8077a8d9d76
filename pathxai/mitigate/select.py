"""Which findings of an audit report to act on, and what kind of bias each one is."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pathxai.errors import AuditError

__all__ = ["Kind", "Target", "kind_of", "read_report", "select_findings"]

Kind = Literal["artifact", "stain", "sampling", "labels"]


@dataclass(frozen=True)
class Target:
    """One finding to act on.

    Attributes
    ----------
    id, check, severity, value
        As in ``report.json``.
    kind
        ``artifact``, ``stain``, ``sampling`` or ``labels``.
    artifact
        The artifact kind for artifact findings (``pen:blue``), else ``""``.
    flagged_class
        The class the bias points to (1 tumour, 0 non-tumour): the class the artifact is more common in.
    finding
        The finding as written in the report.
    """

    id: str
    check: str
    severity: str
    value: float | None
    kind: Kind
    artifact: str = ""
    flagged_class: int = 1
    finding: Mapping[str, Any] = field(default_factory=dict)


def read_report(audit: str | Path) -> dict[str, Any]:
    """The ``report.json`` of an audit directory (or the file itself).

    Raises
    ------
    AuditError
        If there is no readable report.
    """
    p = Path(audit)
    path = p / "report.json" if p.is_dir() else p
    if not path.is_file():
        raise AuditError(
            f"no audit report at {path}", hint="pass --audit the --out folder of 'pathxai audit'"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot read the audit report {path} ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
        raise AuditError(f"{path} is not a pathxai audit report (no 'findings' list)")
    return data


def kind_of(check: str) -> Kind | None:
    """The kind of bias a check reports (``None`` for checks no method acts on)."""
    if check.startswith("artifact.") and ":" in check:
        return "artifact"
    if check.startswith("stain.probe.label") or check == "stain.sensitivity":
        return "stain"
    if check.startswith("labels."):
        return "labels"
    if check.startswith("sampling.") and check not in ("sampling.leakage", "sampling.spray"):
        return "sampling"
    return None


def _flagged_class(f: Mapping[str, Any], findings: Sequence[Mapping[str, Any]], artifact: str) -> int:
    """Class the bias points to: where the artifact is more prevalent (its label-association finding)."""
    for g in [f, *findings]:
        d = g.get("details") or {}
        if g is not f and g.get("check") != f"artifact.label_association:{artifact}":
            continue
        if "prevalence_tumour" in d and "prevalence_non_tumour" in d:
            return int(float(d["prevalence_tumour"]) >= float(d["prevalence_non_tumour"]))
    return 1


def _target(f: Mapping[str, Any], findings: Sequence[Mapping[str, Any]]) -> Target | None:
    check = str(f.get("check", ""))
    kind = kind_of(check)
    if kind is None:
        return None
    artifact = check.split(":", 1)[1] if kind == "artifact" else ""
    return Target(
        id=str(f.get("id") or check),
        check=check,
        severity=str(f.get("severity", "")),
        value=f.get("value"),
        kind=kind,
        artifact=artifact,
        flagged_class=_flagged_class(f, findings, artifact) if kind == "artifact" else 1,
        finding=f,
    )


def select_findings(report: Mapping[str, Any], finding: str | None = None) -> list[Target]:
    """The findings to act on.

    Parameters
    ----------
    report
        A parsed ``report.json``.
    finding
        A finding ``id`` or check name (``artifact.relevance:pen:blue``); ``None``: every high-severity
        class-correlated finding a method can act on (one per artifact kind / bias kind, the
        model-dependent relevance finding preferred).

    Raises
    ------
    AuditError
        If the named finding is not in the report, or nothing is left to act on.
    """
    findings: list[Mapping[str, Any]] = list(report.get("findings", []))
    if finding is not None:
        hits = [f for f in findings if f.get("id") == finding] or [
            f for f in findings if f.get("check") == finding
        ]
        if not hits:
            known = ", ".join(str(f.get("id")) for f in findings[:12])
            raise AuditError(
                f"no finding {finding!r} in the report", hint=f"pass one of the ids: {known} ..."
            )
        target = _target(hits[0], findings)
        if target is None:
            raise AuditError(
                f"no mitigation acts on {hits[0].get('check')!r}",
                hint="artifact.*, stain.probe.label, stain.sensitivity, labels.* and sampling.* findings can be acted on",
            )
        return [target]
    out: dict[tuple[str, str], Target] = {}
    for f in findings:
        if f.get("severity") != "high" or f.get("family") != "class-correlated":
            continue
        t = _target(f, findings)
        if t is None:
            continue
        key = (t.kind, t.artifact)
        # one target per bias: the model's relevance finding says most about what the model learned
        if key not in out or t.check.startswith("artifact.relevance"):
            out[key] = t
    if not out:
        raise AuditError(
            "the report has no high-severity class-correlated finding to act on",
            hint="name one with --finding ID (its 'id' in report.json)",
        )
    return list(out.values())
