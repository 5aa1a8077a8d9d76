"""The viewer's Mitigation tab (Streamlit): a mitigated model's before/after and both models' heatmaps.

The numbers come from ``mitigation.json`` (:mod:`pathxai.viewer.mitigation`); the heatmaps are
computed on demand (a toggle, as they cost a few LRP passes) on the first stress images of the step
and cached per mitigation file, step and number of images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from pathxai.errors import PathXAIError
from pathxai.mitigate.report import summary_rows
from pathxai.render.heatmap import RELEVANCE_CMAP, colorbar
from pathxai.render.outline import outline
from pathxai.viewer.catalog import Catalog, ModelEntry
from pathxai.viewer.mitigation import (
    Comparison,
    ModelLoader,
    compare,
    mitigated_models,
    read_mitigation,
    reaudit_table,
    stress_steps,
    summary_table,
)
from pathxai.viewer.paths import file_version
from pathxai.viewer.region import heatmap_rgb

__all__ = ["mitigation_panel"]

#: A recomputed probability further than this from mitigation.json's is reported.
MATCH_TOLERANCE = 0.01
#: Short labels of :func:`pathxai.mitigate.report.summary_rows`, and whether lower is better.
METRICS = (
    ("stress-test sensitivity", True),
    ("flip rate", True),
    ("relevance on artifact", True),
    ("clean held-out AUC", False),
)


@st.cache_resource(show_spinner=False, max_entries=4)
def _comparison(
    out: str, rel: str, version: str, step: int, n: int, _cat: Catalog, _model: ModelEntry, _load: Any
) -> Comparison:
    """Both models on ``n`` stress images (cached per folder, model, mitigation file version, step, n)."""
    doc = read_mitigation(_cat, _model)
    return compare(_cat, _model, doc, step, n, _load)


def _fmt(x: Any) -> str:
    return "—" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def _metrics(step: dict[str, Any]) -> None:
    """The step's numbers as before → after metrics, then as a table."""
    rows = summary_rows(step)
    cols = st.columns(len(rows))
    for col, (_, before, after), (label, lower_better) in zip(cols, rows, METRICS, strict=True):
        numbers = isinstance(before, int | float) and isinstance(after, int | float)
        col.metric(
            label,
            _fmt(after),
            delta=f"{after - before:+.3f} (before {_fmt(before)})" if numbers else None,
            delta_color="inverse" if lower_better else "normal",
        )
    st.dataframe(summary_table(step), width="stretch", hide_index=True)


def _examples(comp: Comparison, artifact: str) -> None:
    st.image(
        colorbar(RELEVANCE_CMAP, -1.0, 1.0, "LRP relevance / its robust max (red = for tumour)"),
        caption="colour scale (each heatmap on its own scale)",
    )
    heads = st.columns(4)
    for col, text in zip(
        heads,
        (
            "clean held-out image",
            f"with the {artifact or 'evidence'} transplanted",
            "original model",
            "mitigated model",
        ),
        strict=True,
    ):
        col.markdown(f"**{text}**")
    for e, o, m in zip(comp.examples, comp.original, comp.mitigated, strict=True):
        partial = not e.mask.all()

        def lined(img: np.ndarray, mask: np.ndarray = e.mask, draw: bool = partial) -> np.ndarray:
            return outline(img, mask) if draw else img

        c0, c1, c2, c3 = st.columns(4)
        c0.image(e.clean, caption=f"{e.recipient}", width="stretch")
        c1.image(lined(e.stressed), caption=f"source {e.source}" if e.source else "stain", width="stretch")
        for col, heat, name in ((c2, o, "original"), (c3, m, "mitigated")):
            if not partial:
                ratio = ""
            elif heat.artifact_ratio is None:
                ratio = ", no relevance for tumour"
            else:
                ratio = f", relevance on artifact ×{heat.artifact_ratio:.2f}"
            col.image(
                lined(heatmap_rgb(heat.relevance, e.stressed)),
                caption=f"{name}: p(tumour) {heat.p_clean:.3f} → {heat.p_stressed:.3f}{ratio}",
                width="stretch",
            )
    gap = comp.max_mismatch()
    if gap > MATCH_TOLERANCE:
        st.warning(
            f"The recomputed tumour probabilities differ from mitigation.json's stress test by up to {gap:.3f}: "
            "the manifest, its images or a model changed since the run."
        )
    else:
        st.caption(f"Tumour probabilities match mitigation.json's stress test (largest gap {gap:.4f}).")


def mitigation_panel(cat: Catalog, load: ModelLoader) -> None:
    """The Mitigation tab: pick a mitigated model folder, its before/after, heatmaps of both models."""
    found = mitigated_models(cat)
    if not found:
        others = [m.rel for m in cat.models]
        st.info(
            "No mitigated model (a model folder with mitigation.json) in this folder. Run "
            "`pathxai mitigate --model DIR --manifest M --audit A --out NEW` with NEW under this folder."
            + (f" Model folders here without mitigation.json: {', '.join(others)}." if others else "")
        )
        return
    rel = st.selectbox(
        "Mitigated model",
        [m.rel for m in found],
        format_func=lambda r: f"{cat.roots.out.name} (the viewer's folder)" if r == "." else r,
        key="mitigated",
    )
    model = next(m for m in found if m.rel == rel)
    try:
        doc = read_mitigation(cat, model)
    except PathXAIError as exc:
        st.error(str(exc))
        return
    st.markdown(
        f"**status** {doc.get('status')} · **from model** `{doc.get('model')}` · **audit** `{doc.get('audit')}`"
    )
    steps = doc["steps"]
    if not steps:
        st.info("This mitigation has no step (no finding was acted on).")
        return
    k = 0
    if len(steps) > 1:
        k = st.selectbox(
            "Finding",
            range(len(steps)),
            format_func=lambda i: f"{steps[i].get('finding')} ({steps[i].get('method')})",
            key="mitigation_step",
        )
    step = steps[k]
    verdict = {True: "passed", False: "FAILED", None: "no stress test"}[step.get("passed")]
    layer = f" in layer `{step['layer']}`" if step.get("layer") else ""
    # ids in backticks: Markdown would read ':pen:' in 'artifact.relevance:pen:blue' as an emoji code
    st.subheader(f"`{step.get('finding')}`: {step.get('method')}{layer} — stress test {verdict}")
    if "before" not in step:
        st.info(str(step.get("note") or step.get("status") or "No measurement for this step."))
        return
    _metrics(step)
    rows = reaudit_table(step)
    if rows:
        st.markdown("**Re-audit** (the finding's checks on the training images, original → mitigated model)")
        st.dataframe(rows, width="stretch", hide_index=True)
    if k not in stress_steps(doc):
        st.caption("This finding has no stress test, so there are no stress images to compare.")
        return
    st.markdown(
        "**The same stress images under both models**: clean held-out images of the other class with the "
        "finding's evidence transplanted, as the stress test builds them."
    )
    n = st.slider("Stress images", 1, 8, 4, key="mitigation_n")
    if not st.toggle("Compute both models' heatmaps (LRP)", key="mitigation_heatmaps"):
        return
    assert model.mitigation_rel is not None
    version = file_version(cat.roots.out_file(model.mitigation_rel))
    slow = (
        ""
        if step.get("stress_images")
        else " (this mitigation.json has no stress record: the evidence is rebuilt from every training "
        "image of the marked class, which takes longer)"
    )
    try:
        with st.spinner(f"Rebuilding {n} stress image(s) and running LRP with both models{slow}"):
            comp = _comparison(str(cat.roots.out), rel, version, k, n, cat, model, load)
    except (PathXAIError, ValueError) as exc:
        st.error(str(exc))
        return
    _examples(comp, str(step.get("artifact") or ""))
