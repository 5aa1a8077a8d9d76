"""Export an :class:`~pathxai.audit.findings.AuditReport`: JSON (versioned schema), self-contained HTML, GeoJSON.

* ``report.json`` — schema :data:`~pathxai.audit.findings.SCHEMA`; top-level ``findings`` with
  ``family``, ``check``, ``metric``, ``value``, ``threshold``, ``severity`` and ``evidence``
  (item ids, regions in level-0 pixels, thumbnail paths, details).
* ``report.html`` — one file, every figure and thumbnail embedded as base64 PNG; readable offline.
* ``findings.geojson`` — every region as a QuPath-readable polygon feature (property ``image`` says
  which slide/image it belongs to), and ``geojson/<id>.geojson`` per slide/image for direct import.
"""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from pathxai.atomic import write_text_atomic
from pathxai.audit.findings import FAMILIES, SEVERITIES, AuditReport, BiasFinding
from pathxai.jsonio import write_json

__all__ = ["geojson_features", "read_report", "render_html", "write_report"]

_SEV_COLOUR = {"info": "#6b7280", "low": "#2563eb", "medium": "#d97706", "high": "#dc2626"}
_FAMILY_TITLE = {
    "dataset": "Dataset-wide biases (staining, artifacts)",
    "class-correlated": "Class-correlated biases (shortcuts, label problems)",
    "sampling": "Sampling biases (representation, leakage, per-group performance)",
}
_FIGURE_TITLES = {
    "counts": "Cohort composition",
    "stain_scatter": "Stain by group",
    "artifacts": "Artifacts and the relevance they attract",
    "group_performance": "Per-group performance",
    "spray_montage": "SpRAy: clusters of explanation strategies (tile | tumour relevance)",
    "label_candidates": "Candidate label errors",
    "artifact_examples": "Worst artifact examples",
    "typical_heatmaps": "Typical heatmaps",
}
_FIGURE_CAPTIONS = {
    "stain_scatter": "Each point is one image. Left: mean haematoxylin vs eosin concentration from colour "
    "deconvolution. Right: how far each image's Macenko stain vectors lie from the cohort's. Groups far apart "
    "in colour are batches a model can tell apart.",
    "artifacts": "Left: how many items show each artifact. Right: share of the positive (tumour) relevance "
    "on artifact pixels divided by their share of the area, on items that have the artifact: 1 means no "
    "preference, above 2 the model attends to the artifact.",
    "spray_montage": "Tiles closest to each cluster centre; red = evidence for tumour, blue = against. "
    "A cluster made of one patient, site or artifact is a strategy that is not tumour morphology.",
    "group_performance": "Computed on items of patients the model was not trained on.",
}


def _img_b64(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def geojson_features(report: AuditReport) -> list[dict[str, Any]]:
    """One GeoJSON polygon feature per evidence region (level-0 pixel coordinates)."""
    feats = []
    for f in report.findings:
        for r in f.regions:
            x0, y0, x1, y1 = r.l0_x, r.l0_y, r.l0_x + r.l0_w, r.l0_y + r.l0_h
            feats.append(
                {
                    "type": "Feature",
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
                    },
                    "properties": {
                        "objectType": "annotation",
                        "classification": {
                            "name": f"{f.severity}: {r.label}",
                            "color": _rgb(_SEV_COLOUR[f.severity]),
                        },
                        "name": f.check,
                        "image": r.item,
                        "check": f.check,
                        "severity": f.severity,
                        "family": f.family,
                        "score": r.score,
                    },
                }
            )
    return feats


def _rgb(hex_colour: str) -> list[int]:
    h = hex_colour.lstrip("#")
    return [int(h[i : i + 2], 16) for i in (0, 2, 4)]


def _esc(x: object) -> str:
    return html.escape(str(x))


def _fmt(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _captions(report: AuditReport) -> dict[str, str]:
    rows = report.tables.get("items", []) if isinstance(report.tables, dict) else []
    out = {}
    for r in rows:
        parts = [str(r.get("id"))]
        if r.get("label") is not None:
            parts.append(str(r["label"]))
        if r.get("patient"):
            parts.append(str(r["patient"]))
        if r.get("probability") is not None:
            parts.append(f"p(tumour) {float(r['probability']):.2f}")
        out[str(r.get("id"))] = " · ".join(parts)
    return out


def _finding_html(
    f: BiasFinding, out_dir: Path, embed_thumbs: bool, captions: dict[str, str] | None = None
) -> str:
    colour = _SEV_COLOUR[f.severity]
    thumbs = ""
    if embed_thumbs and f.thumbnails:
        imgs = []
        from pathxai.audit.figures import safe_name

        by_file = {f"thumbs/{safe_name(i)}.png": i for i in f.items}
        for rel in f.thumbnails[:8]:
            src = _img_b64(out_dir / rel)
            if src:
                item = by_file.get(rel, Path(rel).stem)
                cap = (captions or {}).get(item, item)
                imgs.append(
                    f'<figure><img src="{src}" alt="{_esc(item)}"><figcaption>{_esc(cap)}</figcaption></figure>'
                )
        if imgs:
            thumbs = '<div class="thumbs">' + "".join(imgs) + "</div>"
    items = ""
    if f.items:
        more = f" … (+{len(f.items) - 30})" if len(f.items) > 30 else ""
        items = f'<p class="ids"><b>Items:</b> {_esc(", ".join(f.items[:30]))}{more}</p>'
    regions = ""
    if f.regions:
        r0 = f.regions[0]
        regions = (
            f'<p class="ids"><b>{len(f.regions)} region(s)</b> (level-0 px, also in findings.geojson), e.g. '
            f"{_esc(r0.item)} x={r0.l0_x} y={r0.l0_y} w={r0.l0_w} h={r0.l0_h}</p>"
        )
    thr = f" (threshold {_fmt(f.threshold)})" if f.threshold is not None else ""
    open_attr = " open" if f.severity in ("medium", "high") else ""
    details = json.dumps(dict(f.details), indent=1, default=str)
    if len(details) > 4000:
        details = details[:4000] + "\n…"
    return f"""
<details class="finding"{open_attr}>
<summary><span class="sev" style="background:{colour}">{f.severity}</span>
<code>{_esc(f.check)}</code> — {_esc(f.metric)}: <b>{_fmt(f.value)}</b>{_esc(thr)}</summary>
<p>{_esc(f.message)}</p>{items}{regions}{thumbs}
<details class="raw"><summary>numbers</summary><pre>{_esc(details)}</pre></details>
</details>"""


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#111;line-height:1.4}
h1{margin-bottom:4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}
.meta{color:#444;font-size:14px}.sev{color:#fff;border-radius:4px;padding:1px 7px;font-size:12px;font-weight:600;
text-transform:uppercase;margin-right:6px}.summary td,.summary th{padding:4px 10px;text-align:left}
table{border-collapse:collapse;font-size:13px}td,th{border-bottom:1px solid #eee;padding:3px 8px}
.finding{border:1px solid #e5e7eb;border-radius:6px;margin:8px 0;padding:6px 10px;background:#fafafa}
.finding summary{cursor:pointer}.finding p{margin:6px 0}.ids{font-size:12px;color:#333;word-break:break-all}
.thumbs{display:flex;flex-wrap:wrap;gap:8px}.thumbs figure{margin:0}.thumbs img{max-height:150px;border:1px solid #ccc}
.thumbs figcaption{font-size:11px;color:#555}.fig img{max-width:100%;border:1px solid #eee}
.fig p{font-size:13px;color:#444}.note{background:#fff7ed;border-left:4px solid #d97706;padding:8px 12px;margin:8px 0}
pre{font-size:11px;background:#f3f4f6;padding:6px;overflow:auto;max-height:260px}
.raw summary{font-size:12px;color:#555}
"""


def _header_html(report: AuditReport, d: dict[str, Any]) -> list[str]:
    """Title, cohort/model line, severity counts, notes and the 'needs attention' table."""
    c, m = report.cohort, report.model
    counts = d["summary"]["counts"]
    sev_cells = "".join(
        f'<td><span class="sev" style="background:{_SEV_COLOUR[s]}">{s}</span> {counts[s]}</td>'
        for s in reversed(SEVERITIES)
    )
    top = [f for f in report.findings if f.severity in ("high", "medium")]
    top_rows = (
        "".join(
            f'<tr><td><span class="sev" style="background:{_SEV_COLOUR[f.severity]}">{f.severity}</span></td>'
            f"<td>{_esc(f.family)}</td><td><code>{_esc(f.check)}</code></td><td>{_esc(f.message[:220])}</td></tr>"
            for f in top
        )
        or '<tr><td colspan="4">No medium or high severity finding.</td></tr>'
    )
    model_txt = (
        f"{_esc(m.get('arch'))} (weights sha256 {_esc(str(m.get('weights_sha256', ''))[:12])}…), "
        f"{_esc(m.get('input_size'))} px tiles at {_esc(m.get('mpp'))} µm/px, relevance by {_esc(m.get('method'))}"
        if m
        else "no model (model-free checks only)"
    )
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>pathxai bias audit</title><style>{_CSS}</style></head><body>",
        f"<h1>Bias audit — {_esc(Path(str(c.get('manifest', 'cohort'))).stem)}</h1>",
        f"<p class='meta'>Cohort <code>{_esc(c.get('manifest'))}</code> — {_esc(c.get('n_items'))} {_esc(c.get('kind'))}s "
        f"({_esc(c.get('n_with_heatmaps'))} with heatmaps), analysed at {_fmt(c.get('analysis_mpp'))} µm/px.<br>"
        f"Model: {model_txt}.<br>Created {_esc(report.created)} by pathxai {_esc(report.version)}; "
        f"schema {_esc(d['schema'])}; took {_fmt(report.timings.get('total'))} s.</p>",
        f"<table class='summary'><tr>{sev_cells}</tr></table>",
    ]
    parts += [f"<div class='note'>{_esc(n)}</div>" for n in report.notes]
    parts.append(
        "<h2>What needs attention</h2><table><tr><th>severity</th><th>family</th><th>check</th><th>finding</th></tr>"
        + top_rows
        + "</table>"
    )
    return parts


_FIGS_FOR = {
    "dataset": ["stain_scatter", "artifacts", "artifact_examples"],
    "class-correlated": ["spray_montage", "label_candidates", "typical_heatmaps"],
    "sampling": ["counts", "group_performance"],
}


def _family_html(report: AuditReport, fam: str, findings: list[BiasFinding], out_dir: Path) -> list[str]:
    """One family's section: its findings (info ones folded into a table) and its figures."""
    parts = [f"<h2>{_esc(_FAMILY_TITLE[fam])}</h2>"]
    caps = _captions(report)
    quiet = []
    for f in findings:
        if f.severity == "info" and not f.check.startswith("labels."):
            quiet.append(f)
            continue
        parts.append(_finding_html(f, out_dir, embed_thumbs=True, captions=caps))
    if quiet:
        rows = "".join(
            f"<tr><td><code>{_esc(f.check)}</code></td><td>{_fmt(f.value)}</td><td>{_esc(f.message)}</td></tr>"
            for f in quiet
        )
        parts.append(
            "<details class='finding'><summary>"
            f"{len(quiet)} further checks below every threshold (info)</summary>"
            f"<table><tr><th>check</th><th>value</th><th>result</th></tr>{rows}</table></details>"
        )
    for name in _FIGS_FOR[fam]:
        rel = report.figures.get(name)
        src = _img_b64(out_dir / rel) if rel else None
        if not src:
            continue
        cap = _FIGURE_CAPTIONS.get(name, "")
        parts.append(
            f"<div class='fig'><h3>{_esc(_FIGURE_TITLES.get(name, name))}</h3><img src='{src}' alt='{_esc(name)}'>"
            + (f"<p>{_esc(cap)}</p>" if cap else "")
            + "</div>"
        )
    return parts


def _thresholds_html(report: AuditReport) -> list[str]:
    """The rules and settings in force, and the timings."""
    rules = report.thresholds.to_dict()
    rule_rows = "".join(
        f"<tr><td><code>{_esc(k)}</code></td><td>{_esc(v['direction'])}</td><td>{_fmt(v['low'])}</td>"
        f"<td>{_fmt(v['medium'])}</td><td>{_fmt(v['high'])}</td><td>{_esc(v['cap'])}</td></tr>"
        for k, v in rules["rules"].items()
    )
    settings = ", ".join(f"{_esc(k)}={_fmt(v)}" for k, v in rules["settings"].items())
    timing = ", ".join(f"{_esc(k)} {v:.1f} s" for k, v in report.timings.items())
    return [
        "<h2>Thresholds in force</h2><p class='meta'>Severity = highest level whose threshold the value reaches "
        "(direction 'above': value ≥ threshold). Probe and association findings also need permutation/Fisher "
        f"p ≤ alpha. Override with <code>--config thresholds.json</code>.</p><table><tr><th>check</th><th>direction</th>"
        f"<th>low</th><th>medium</th><th>high</th><th>cap</th></tr>{rule_rows}</table><p class='meta'>Settings: {settings}</p>",
        f"<p class='meta'>Timings: {timing}. Machine-readable: report.json; regions for QuPath: findings.geojson.</p>",
    ]


def render_html(report: AuditReport, out_dir: Path) -> str:
    """The report as one self-contained HTML page (figures and thumbnails embedded)."""
    parts = _header_html(report, report.to_dict())
    by_family: dict[str, list[BiasFinding]] = defaultdict(list)
    for f in report.findings:
        by_family[f.family].append(f)
    for fam in FAMILIES:
        parts += _family_html(report, fam, by_family.get(fam, []), out_dir)
    parts += _thresholds_html(report)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: AuditReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.html``, ``findings.geojson`` and ``geojson/<id>.geojson`` atomically.

    Returns
    -------
    dict[str, Path]
        What was written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    written["json"] = write_json(out / "report.json", report.to_dict(), indent=1)
    feats = geojson_features(report)
    written["geojson"] = write_json(
        out / "findings.geojson", {"type": "FeatureCollection", "features": feats}, indent=None
    )
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ft in feats:
        per[str(ft["properties"]["image"])].append(ft)
    from pathxai.audit.figures import safe_name

    for item, fs in per.items():
        write_json(
            out / "geojson" / f"{safe_name(item)}.geojson",
            {"type": "FeatureCollection", "features": fs},
            indent=None,
        )
    written["html"] = write_text_atomic(out / "report.html", render_html(report, out))
    for path in written.values():
        path.chmod(0o644)  # temp files are created private; reports are meant to be shared
    return written


def read_report(path: str | Path) -> dict[str, Any]:
    """Read a ``report.json`` (for the viewer), checking the schema.

    Raises
    ------
    pathxai.errors.AuditError
        If the file is missing, not JSON or of another schema.
    """
    from pathxai.audit.findings import SCHEMA
    from pathxai.errors import AuditError

    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AuditError("audit report not found", path=p, hint="run 'pathxai audit' first") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AuditError(f"audit report is not readable JSON ({exc})", path=p) from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise AuditError(
            f"not a {SCHEMA} report (schema {data.get('schema') if isinstance(data, dict) else None!r})",
            path=p,
        )
    return data
