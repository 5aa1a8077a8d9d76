"""``mitigation.html``: before/after of every finding acted on, with its figure, in one self-contained page."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pathxai.atomic import write_text_atomic
from pathxai.audit.diff import diff_findings

__all__ = ["stress_figure", "summary_rows", "write_html"]


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.3f}"
    return html.escape(str(x))


def stress_figure(step: Mapping[str, Any]) -> str:
    """PNG (base64) of the stress test: each recipient's tumour probability without and with the artifact."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), sharey=True)
    for ax, when in zip(axes, ("before", "after"), strict=True):
        s = step[when].get("stress") or {}
        base, stressed = s.get("baseline", []), s.get("stressed", [])
        ax.scatter(base, stressed, s=14, alpha=0.7)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("tumour probability, clean")
        ax.set_title(f"{when}: sensitivity {s.get('sensitivity', float('nan')):+.3f}")
    axes[0].set_ylabel("with the transplanted artifact")
    fig.suptitle(f"{step['finding']}: {step['method']}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _reaudit(before: list[Mapping[str, Any]], after: list[Mapping[str, Any]]) -> tuple[str, str]:
    """The re-audit's before and after cells; the after one says how each finding changed (audit diff)."""

    def cell(sev: str | None, value: float | None) -> str:
        return f"<b>{_fmt(sev)}</b> ({_fmt(value)})"

    changes = diff_findings(before, after)
    b = [f"{_fmt(c.id)}: {cell(c.severity_before, c.value_before)}" for c in changes if c.change != "new"]
    a = [
        f"{_fmt(c.id)}: {cell(c.severity_after, c.value_after)}"
        + ("" if c.change == "same" else f" [{c.change}]")
        for c in changes
    ]
    return "<br>".join(b) or "—", "<br>".join(a) or "—"


def summary_rows(step: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(measure, before, after)`` rows of a step (those of ``mitigation.html`` and the viewer's tab).

    Stress-test sensitivity and flip rate, relevance on the artifact, clean held-out AUC.
    """
    b, a = step.get("before") or {}, step.get("after") or {}
    return [
        (
            "stress-test sensitivity (Δp towards the marked class)",
            (b.get("stress") or {}).get("sensitivity"),
            (a.get("stress") or {}).get("sensitivity"),
        ),
        (
            "stress-test flip rate",
            (b.get("stress") or {}).get("flip_rate"),
            (a.get("stress") or {}).get("flip_rate"),
        ),
        (
            "relevance on the artifact (share / area)",
            b.get("relevance_on_artifact"),
            a.get("relevance_on_artifact"),
        ),
        ("clean held-out AUC", b.get("clean_auc"), a.get("clean_auc")),
    ]


def _step(step: Mapping[str, Any]) -> str:
    if "before" not in step:
        return f"<h2>{_fmt(step.get('finding'))}: {_fmt(step.get('method'))}</h2><p>{_fmt(step.get('note') or step.get('status'))}</p>"
    b, a = step["before"], step["after"]
    rows = summary_rows(step)
    table = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{_fmt(x)}</td><td>{_fmt(y)}</td></tr>" for n, x, y in rows
    )
    rb, ra = _reaudit(b.get("reaudit", []), a.get("reaudit", []))
    table += f"<tr><td>re-audit</td><td>{rb}</td><td>{ra}</td></tr>"
    verdict = {True: "passed", False: "FAILED", None: "no stress test"}[step.get("passed")]
    fig = f'<img src="data:image/png;base64,{stress_figure(step)}">' if "stress" in b else ""
    return (
        f"<h2>{_fmt(step['finding'])}: {_fmt(step['method'])} — stress test {verdict}</h2>"
        f"<table><tr><th></th><th>before</th><th>after</th></tr>{table}</table>{fig}"
    )


def write_html(doc: Mapping[str, Any], path: Path) -> Path:
    """Write the page for a ``mitigation.json`` document."""
    body = "".join(_step(s) for s in doc.get("steps", []))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>pathxai mitigation</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:.2em .6em;"
        "border-bottom:1px solid #ddd;text-align:left}</style></head><body>"
        f"<h1>Mitigation: {_fmt(doc.get('status'))}</h1>"
        f"<p>model {_fmt(doc.get('model'))}, audit {_fmt(doc.get('audit'))}; pass rule: {_fmt(doc.get('pass_rule'))}</p>"
        f"{body}</body></html>"
    )
    return write_text_atomic(path, page)
