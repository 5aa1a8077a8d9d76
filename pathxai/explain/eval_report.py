"""The HTML page of ``pathxai explain-eval``: one table per metric group and the perturbation curves."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pathxai.atomic import write_text_atomic

__all__ = ["render_html", "write_html"]

_GROUPS = ("faithfulness", "randomisation", "localisation", "robustness", "complexity", "axiomatic")

_NOTES = {
    "faithfulness": "Region perturbation on the explained class's probability, regions replaced by a blurred "
    "copy. morf_ratio = MoRF area / random-order area (lower = deletes evidence faster; < 1 beats random); "
    "lerf_ratio: higher is better.",
    "randomisation": "cascading_spearman_full: Spearman of |R| after every conv/dense layer is re-initialised "
    "(top-down); near 0 passes, >= 0.5 fails. random_logit_pearson: map for another class vs the explained "
    "one (near +1: the map ignores the class).",
    "localisation": "relevance_mass: share of positive relevance inside the mask; mask_share is its chance "
    "level; pointing_game vs pointing_chance.",
    "robustness": "Pearson of the map with the map under HED stain jitter / a one-pixel shift (higher = more "
    "stable).",
    "complexity": "Gini sparseness of |R| (higher = sparser); entropy of |R| (lower = simpler).",
    "axiomatic": "Conservation of LRP: sum of relevance / explained logit (1 = conserved; biases absorb some).",
}


def _fmt(summary: Any) -> str:
    if not isinstance(summary, dict) or summary.get("mean") is None:
        return "-"
    return f"{summary['mean']:.3f} [{summary['ci_low']:.3f}, {summary['ci_high']:.3f}]"


def _table(result: dict[str, Any], group: str) -> str:
    methods = result["methods"]
    metrics: list[str] = []
    for m in methods.values():
        for k in m.get(group, {}):
            if k not in metrics:
                metrics.append(k)
    if not metrics:
        return ""
    head = "".join(f"<th>{html.escape(k)}</th>" for k in metrics)
    rows = []
    for label, m in methods.items():
        cells = "".join(f"<td>{_fmt(m.get(group, {}).get(k))}</td>" for k in metrics)
        extra = ""
        if group == "randomisation":
            extra = f"<td>{html.escape(str(m['details']['randomisation_verdict']))}</td>"
        rows.append(f"<tr><th>{html.escape(label)}</th>{cells}{extra}</tr>")
    verdict_head = "<th>verdict</th>" if group == "randomisation" else ""
    return (
        f"<h2>{group}</h2><p>{html.escape(_NOTES[group])}</p>"
        f"<table><tr><th>method</th>{head}{verdict_head}</tr>{''.join(rows)}</table>"
    )


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _curve_plots(result: dict[str, Any]) -> str:
    curves = result.get("curves", {})
    fractions = curves.get("fractions") or []
    if not fractions:
        return ""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, order in zip(axes, ("morf", "lerf"), strict=True):
        for label in result["methods"]:
            if order in curves.get(label, {}):
                ax.plot(fractions, curves[label][order], label=label)
        ax.plot(fractions, curves["random"]["morf"], "k--", label="random order")
        ax.set_title(f"{order.upper()}: probability of the explained class")
        ax.set_xlabel("fraction of regions replaced by blur")
    axes[0].set_ylabel("mean probability")
    axes[1].legend(fontsize=7)
    parts = [_png(fig)]
    cascades = {k: m["details"]["cascade"] for k, m in result["methods"].items() if m["details"]["cascade"]}
    if cascades:
        fig, ax = plt.subplots(figsize=(8, 4))
        for label, cascade in cascades.items():
            ax.plot(range(1, len(cascade) + 1), [c["spearman"] for c in cascade], marker="o", label=label)
        layers = next(iter(cascades.values()))
        ax.set_xticks(range(1, len(layers) + 1), [c["layer"] for c in layers], rotation=45, fontsize=7)
        ax.set_ylabel("Spearman |R| vs trained")
        ax.set_title("cascading randomisation (top-down, cumulative)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(fontsize=7)
        parts.append(_png(fig))
    return "".join(parts)


def render_html(result: dict[str, Any]) -> str:
    """Return the page for an ``explain_eval.json`` result."""
    prov = result.get("provenance", {})
    rec = result.get("recommendation", {})
    ranking = "".join(
        f"<li>{html.escape(str(r['method']))}: MoRF ratio {r['morf_ratio']}, randomisation "
        f"{html.escape(str(r['randomisation']))}{' — excluded: ' + html.escape(r['excluded']) if r['excluded'] else ''}</li>"
        for r in rec.get("ranking", [])
    )
    tables = "".join(_table(result, g) for g in _GROUPS)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>pathxai explain-eval</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}</style></head><body>"
        f"<h1>Which heatmap to trust</h1><p>model {html.escape(str(prov.get('model')))} "
        f"({html.escape(str(prov.get('arch')))}), manifest {html.escape(str(prov.get('manifest')))}, "
        f"split {html.escape(str(prov.get('split')))}; {result.get('n_patches')} patches "
        f"({result.get('n_tumour_patches')} tumour). Masks: {html.escape(str(prov.get('mask_meaning')))}. "
        "Values: mean [95 % bootstrap CI over patches].</p>"
        f"<h2>recommendation: {html.escape(str(rec.get('method')))}</h2>"
        f"<p>{html.escape(str(rec.get('rule')))}</p><ul>{ranking}</ul>"
        f"{tables}<h2>curves</h2>{_curve_plots(result)}</body></html>"
    )


def write_html(path: str | Path, result: dict[str, Any]) -> Path:
    """Write :func:`render_html` to ``path`` atomically and return the path."""
    write_text_atomic(Path(path), render_html(result))
    return Path(path)
