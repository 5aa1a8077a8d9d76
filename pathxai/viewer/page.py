"""The Streamlit page of the slide viewer (``pathxai view DIR`` runs it).

Configuration comes from the environment that ``pathxai view`` sets:

- ``PATHXAI_VIEW_DIR``: the output directory (stores, audit reports, models);
- ``PATHXAI_SLIDE_ROOTS``: extra slide roots, separated by ``os.pathsep``;
- ``PATHXAI_TILE_HOST`` / ``PATHXAI_TILE_PORT``: where the tile server binds (``127.0.0.1``, free port);
- ``PATHXAI_TILE_URL``: the tile server's URL as the browser sees it (default: the host the browser
  used for the page, with the tile port).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import streamlit.components.v1 as components

from pathxai.errors import PathXAIError
from pathxai.explain import METHODS
from pathxai.model import load_model_with_card
from pathxai.render.heatmap import (
    PROBABILITY_CMAP,
    RELEVANCE_CMAP,
    blend,
    colorbar,
    resize_rgba,
)
from pathxai.slide import open_slide
from pathxai.store import HeatmapStore
from pathxai.store.trust import read_trust, trust_line
from pathxai.viewer.catalog import VIEW_CONFIG, Catalog, SlideEntry, make_roots, read_json, scan
from pathxai.viewer.mitigation_tab import mitigation_panel
from pathxai.viewer.region import (
    explain_tile,
    find_model,
    heatmap_rgb,
    read_tile,
    tile_at,
    top_tiles,
)
from pathxai.viewer.server import TileServer
from pathxai.viewer.tiles import TileService, overlay_image, store_layers, store_vmax

STATIC_DIR = Path(__file__).resolve().parent / "static"
OSD_JS = STATIC_DIR / "node_modules" / "openseadragon" / "build" / "openseadragon" / "openseadragon.min.js"
OVERLAYS = ("relevance", "probability", "none")
_component = components.declare_component("pathxai_slide_viewer", path=str(STATIC_DIR))


@dataclass(frozen=True)
class ViewerConfig:
    """Where the viewer reads from and how its tile server is reached."""

    out: Path
    slide_roots: tuple[Path, ...]
    tile_host: str
    tile_port: int
    tile_url: str | None


def config_from_env() -> ViewerConfig | None:
    """The configuration set by ``pathxai view`` (``None`` when ``PATHXAI_VIEW_DIR`` is unset)."""
    out = os.environ.get("PATHXAI_VIEW_DIR")
    if not out:
        return None
    roots = tuple(Path(p) for p in os.environ.get("PATHXAI_SLIDE_ROOTS", "").split(os.pathsep) if p)
    return ViewerConfig(
        out=Path(out),
        slide_roots=roots,
        tile_host=os.environ.get("PATHXAI_TILE_HOST", "127.0.0.1"),
        tile_port=int(os.environ.get("PATHXAI_TILE_PORT", "0")),
        tile_url=os.environ.get("PATHXAI_TILE_URL") or None,
    )


@st.cache_resource(show_spinner=False)
def _tile_server(out: str, roots: tuple[str, ...], host: str, port: int) -> TileServer:
    return TileServer(TileService(make_roots(out, list(roots))), host=host, port=port)


@st.cache_resource(show_spinner=False, max_entries=8)
def _catalog(out: str, roots: tuple[str, ...], stamp: tuple[int, ...]) -> Catalog:
    """The folder's catalogue, rescanned when ``stamp`` changes (kept in memory, never pickled)."""
    return scan(make_roots(out, list(roots)))


def _stamp(out: Path) -> tuple[int, ...]:
    """Modification times of the folder, its sub-folders (two deep) and its viewer config."""
    stamps = []
    for d in (out, *out.glob("*/"), *out.glob("*/*/")):
        try:
            stamps.append(d.stat().st_mtime_ns)
        except OSError:
            stamps.append(0)
    cfg = out / VIEW_CONFIG
    stamps.append(cfg.stat().st_mtime_ns if cfg.is_file() else 0)
    return tuple(stamps)


@st.cache_resource(show_spinner=False, max_entries=4)
def _model(ref: str) -> Any:
    return load_model_with_card(ref)


def _browser_tile_url(cfg: ViewerConfig, server: TileServer) -> str:
    if cfg.tile_url:
        return f"{cfg.tile_url.rstrip('/')}/{server.token}"
    host = "127.0.0.1"
    try:
        header = st.context.headers.get("Host") or ""
    except Exception:
        header = ""
    if header:
        host = header.rsplit(":", 1)[0] if not header.endswith("]") else header
    return f"http://{host}:{server.port}/{server.token}"


def _legend(layer: str, vmax: float) -> np.ndarray | None:
    if layer == "relevance":
        return colorbar(RELEVANCE_CMAP, -vmax, vmax, "relevance (LRP, red = for tumour)")
    if layer == "probability":
        return colorbar(PROBABILITY_CMAP, 0.0, 1.0, "tumour probability")
    return None


def _static_view(entry: SlideEntry, cat: Catalog, layer: str, opacity: float) -> None:
    """Fallback without OpenSeadragon: the thumbnail with the overlay blended in."""
    assert entry.slide_loc is not None
    path = cat.roots.slide_file(*entry.slide_loc)
    with open_slide(path, mpp=float(entry.attrs["slide_mpp"])) as slide:
        thumb, _ = slide.thumbnail(max_side=1200)
    if layer != "none":
        with HeatmapStore.open(cat.roots.out / entry.store_rel) as store:
            rgba = overlay_image(store, layer)
        thumb = blend(thumb, resize_rgba(rgba, thumb.shape[1], thumb.shape[0]), opacity)
    st.image(thumb, caption=f"{entry.slide_id} (static view)", width="stretch")


def _select_region(entry: SlideEntry, cat: Catalog, x: float, y: float, source: str) -> None:
    """Remember the selected point and the analysed tile under it (drawn as a marker on the slide)."""
    region: dict[str, Any] = {"slide": entry.slide_id, "x": float(x), "y": float(y), "source": source}
    with HeatmapStore.open(cat.roots.out / entry.store_rel) as store:
        idx = tile_at(store, x, y)
        if idx is not None:
            a = store.attrs
            size = round(float(a["size"]) * float(a["mpp"]) / float(a["slide_mpp"]))
            cx, cy = (int(v) for v in store.coords[idx])
            region["tile"] = [cx, cy, size]
    st.session_state["region"] = region


def _goto(x: float, y: float, w: float, h: float) -> None:
    st.session_state["goto"] = {"x": x, "y": y, "w": w, "h": h, "nonce": time.time()}


def _slide_panel(entry: SlideEntry, cat: Catalog, cfg: ViewerConfig, layer: str, opacity: float) -> None:
    if entry.slide_loc is None:
        st.warning(
            f"The slide of {entry.slide_id} ({entry.slide_path}) is outside the viewer's roots, so it is "
            "not served. Start the viewer with `--slide-root DIR` for the folder that holds it."
        )
        return
    if not OSD_JS.is_file():
        st.info("OpenSeadragon is not installed (run `bash scripts/install.sh`); showing a static view.")
        _static_view(entry, cat, layer, opacity)
        return
    server = _tile_server(str(cfg.out), tuple(map(str, cfg.slide_roots)), cfg.tile_host, cfg.tile_port)
    geom = server.service.slide_info(*entry.slide_loc)
    region = st.session_state.get("region")
    marker = None
    if region and region.get("slide") == entry.slide_id and region.get("tile"):
        t = region["tile"]
        marker = {"x": t[0], "y": t[1], "w": t[2], "h": t[2]}
    clicked = _component(
        tile_base=_browser_tile_url(cfg, server),
        slide={"root": entry.slide_loc[0], "path": entry.slide_loc[1], **geom},
        overlay=None
        if layer == "none"
        else {"store": entry.store_rel, "layer": layer, "v": entry.store_version},
        opacity=opacity,
        goto=st.session_state.get("goto"),
        marker=marker,
        height=480,
        key=f"osd-{entry.slide_id}",
        default=None,
    )
    if isinstance(clicked, dict) and clicked.get("nonce") != st.session_state.get("last_click"):
        st.session_state["last_click"] = clicked.get("nonce")
        _select_region(entry, cat, float(clicked["x"]), float(clicked["y"]), "click")
        st.rerun()


def _region_panel(entry: SlideEntry, cat: Catalog, method: str) -> None:
    store_path = cat.roots.out / entry.store_rel
    with HeatmapStore.open(store_path) as store:
        tops = top_tiles(store, 10)
        coords = store.coords
        probs = store.probabilities
        target = int(store.attrs.get("target_class", 1))
        if tops:
            labels = {
                i: f"tile {i} at ({coords[i][0]}, {coords[i][1]}), p={probs[i, target]:.2f}" for i in tops
            }
            pick = st.selectbox(
                "Go to a high-probability tile",
                [None, *tops],
                format_func=lambda i: "—" if i is None else labels[i],
            )
            if pick is not None and st.session_state.get("last_pick") != (entry.slide_id, pick):
                st.session_state["last_pick"] = (entry.slide_id, pick)
                a = store.attrs
                size = float(a["size"]) * float(a["mpp"]) / float(a["slide_mpp"])
                _select_region(entry, cat, coords[pick][0] + size / 2, coords[pick][1] + size / 2, "list")
                _goto(float(coords[pick][0]), float(coords[pick][1]), size, size)
                st.rerun()
        region = st.session_state.get("region")
        if not region or region.get("slide") != entry.slide_id:
            st.caption("Click the slide (or pick a tile above, or an audit finding) to inspect a region.")
            return
        idx = tile_at(store, region["x"], region["y"])
        if idx is None:
            st.info(
                f"No analysed tile at level-0 ({region['x']:.0f}, {region['y']:.0f}) (glass or excluded)."
            )
            return
        if entry.slide_loc is None:
            st.warning("The slide is outside the viewer's roots; tile pixels cannot be shown.")
            return
        view = read_tile(store, cat.roots.slide_file(*entry.slide_loc), idx)
    st.subheader(
        f"Tile {view.index} at level-0 ({view.l0_x}, {view.l0_y}), {view.size} px at {view.mpp:g} µm/px"
    )
    names = view.classes or tuple(f"class {i}" for i in range(len(view.probabilities)))
    c0, c1, c2, c3 = st.columns([0.8, 1, 1, 1])
    for name, p in zip(names, view.probabilities, strict=False):
        c0.metric(f"p({name})", f"{float(p):.3f}")
    c1.image(view.pixels, caption="tile", width="stretch")
    if view.tile_relevance is not None:
        c2.image(
            heatmap_rgb(view.tile_relevance, view.pixels),
            caption=f"stored heatmap ({view.method})",
            width="stretch",
        )
    else:
        c2.caption("No stored heatmap: this run kept probabilities only (method none).")
    key = (entry.slide_id, view.index, method)
    cache: dict[Any, Any] = st.session_state.setdefault("computed", {})
    if c3.button(f"Compute {method} here", key="compute"):
        ref = find_model(cat, str(entry.attrs.get("model_sha256", "")))
        if ref is None:
            st.error(
                "The run's model is neither the default model nor a model directory under the output folder."
            )
        else:
            model, card = _model(ref)
            with st.spinner(f"{method} on tile {view.index}"):
                rel, p = explain_tile(model, card, view.pixels, method)
            cache[key] = (rel, p)
    if key in cache:
        rel, p = cache[key]
        c3.image(
            heatmap_rgb(rel, view.pixels), caption=f"{method}: p(tumour)={float(p[-1]):.3f}", width="stretch"
        )


def _audit_panel(entry: SlideEntry | None, cat: Catalog) -> None:
    if not cat.reports:
        st.info("No audit report (report.json) in this folder. Run `pathxai audit` or `pathxai demo`.")
        return
    rel = st.selectbox("Audit report", cat.reports, key="report")
    try:
        report = read_json(cat.roots, rel)
    except PathXAIError as exc:
        st.error(str(exc))
        return
    findings = report.get("findings", []) if isinstance(report, dict) else []
    rows = []
    jumps: list[tuple[str, dict[str, Any]]] = []
    for i, f in enumerate(findings):
        regions = (f.get("evidence") or {}).get("regions") or []
        rows.append(
            {
                "#": i,
                "severity": f.get("severity"),
                "family": f.get("family"),
                "check": f.get("check"),
                "metric": f.get("metric"),
                "value": f.get("value"),
                "threshold": f.get("threshold"),
                "regions": len(regions),
                "message": f.get("message", ""),
            }
        )
        for j, r in enumerate(regions):
            if entry is not None and r.get("item") == entry.slide_id:
                jumps.append((f"#{i} {f.get('check')} — {r.get('label', '')} region {j}", r))
    st.dataframe(rows, width="stretch", hide_index=True)
    if entry is None:
        return
    if not jumps:
        st.caption(f"No finding has a region on {entry.slide_id}.")
        return
    labels = [lab for lab, _ in jumps]
    choice = st.selectbox("Jump to a finding's region on this slide", [None, *labels], key="finding")
    if choice is not None and st.session_state.get("last_finding") != choice:
        st.session_state["last_finding"] = choice
        r = dict(jumps[labels.index(choice)][1])
        _goto(float(r["l0_x"]), float(r["l0_y"]), float(r["l0_w"]), float(r["l0_h"]))
        _select_region(entry, cat, r["l0_x"] + r["l0_w"] / 2, r["l0_y"] + r["l0_h"] / 2, "finding")
        st.rerun()
    if choice is not None:
        st.success(f"Showing {choice} on the Slide tab.")


def _models_panel(entry: SlideEntry | None, cat: Catalog) -> None:
    pruned = [m for m in cat.models if m.pruning_rel]
    if not pruned:
        st.info(
            "No pruned model (a model folder with pruning.json) in this folder. Run `pathxai prune` or the demo."
        )
        return
    choice = st.selectbox("Pruned model", [m.rel for m in pruned], key="pruned")
    m = next(p for p in pruned if p.rel == choice)
    assert m.pruning_rel is not None
    info = read_json(cat.roots, m.pruning_rel)
    plan = info.get("plan", {}) if isinstance(info, dict) else {}
    before, after = plan.get("metrics_before", {}), plan.get("metrics_after", {})
    st.markdown(f"**criterion** {plan.get('criterion')} · **ratio** {plan.get('ratio')}")
    keys = sorted(set(before) | set(after))
    st.dataframe(
        [{"metric": k, "original": before.get(k), "pruned": after.get(k)} for k in keys],
        width="stretch",
        hide_index=True,
    )
    drift = info.get("drift") if isinstance(info, dict) else None
    if drift:
        st.markdown("**Explanation drift** (LRP heatmaps, original vs pruned)")
        st.dataframe([{"measure": k, "value": v} for k, v in drift.items()], width="stretch", hide_index=True)
    region = st.session_state.get("region")
    if entry is None or not region or region.get("slide") != entry.slide_id or entry.slide_loc is None:
        st.caption("Select a region on the Slide tab to compare both models on it.")
        return
    with HeatmapStore.open(cat.roots.out / entry.store_rel) as store:
        idx = tile_at(store, region["x"], region["y"])
        if idx is None:
            st.caption("The selected point has no analysed tile.")
            return
        view = read_tile(store, cat.roots.slide_file(*entry.slide_loc), idx)
    if st.button("Compare original and pruned on the selected tile", key="compare"):
        ref = find_model(cat, str(entry.attrs.get("model_sha256", "")))
        if ref is None:
            st.error("The run's model could not be found (default model or a model folder under the output).")
            return
        out = {}
        for name, r in (("original", ref), ("pruned", str(cat.roots.out / m.rel))):
            model, card = _model(r)
            out[name] = explain_tile(model, card, view.pixels, "lrp")
        st.session_state["comparison"] = (entry.slide_id, idx, choice, out)
    comp = st.session_state.get("comparison")
    if comp and comp[:3] == (entry.slide_id, idx, choice):
        cols = st.columns(2)
        for col, name in zip(cols, ("original", "pruned"), strict=True):
            rel, p = comp[3][name]
            col.image(
                heatmap_rgb(rel, view.pixels),
                caption=f"{name}: p(tumour)={float(p[-1]):.3f}",
                width="stretch",
            )


def main() -> None:
    """Render the viewer page."""
    st.set_page_config(page_title="pathxai viewer", layout="wide")
    cfg = config_from_env()
    if cfg is None:
        st.error("No output folder configured. Start the viewer with `pathxai view DIR`.")
        return
    if not cfg.out.is_dir():
        st.error(f"{cfg.out} is not a folder. Run `pathxai demo --out {cfg.out}` first.")
        return
    cat = _catalog(str(cfg.out), tuple(map(str, cfg.slide_roots)), _stamp(cfg.out))
    st.sidebar.title("pathxai viewer")
    st.sidebar.caption(f"folder: {cfg.out}")
    entry: SlideEntry | None = None
    if cat.slides:
        sid = st.sidebar.selectbox("Slide", [s.slide_id for s in cat.slides], key="slide")
        entry = cat.slide(sid)
    else:
        st.sidebar.warning("No complete heatmap store (*.h5) in this folder.")
    # a probability-only store (method "none") offers no relevance layer
    overlays = OVERLAYS if entry is None else (*store_layers(entry.attrs), "none")
    if st.session_state.get("layer") not in (None, *overlays):
        del st.session_state["layer"]  # "relevance" chosen on another slide
    layer = st.sidebar.radio("Overlay", overlays, key="layer", horizontal=True)
    opacity = st.sidebar.slider("Overlay opacity", 0.0, 1.0, 0.6, 0.05, key="opacity")
    methods = sorted(METHODS)
    method = st.sidebar.selectbox(
        "Method for on-the-spot heatmaps",
        methods,
        index=methods.index("lrp") if "lrp" in methods else 0,
        key="method",
    )
    if entry is not None:
        a = entry.attrs
        if layer != "none":
            with HeatmapStore.open(cat.roots.out / entry.store_rel) as store:
                vmax = store_vmax(store)
            legend = _legend(layer, vmax)
            if legend is not None:
                st.sidebar.image(legend, caption="colour scale")
        st.sidebar.markdown(
            f"**model** {a.get('model_name')} (`{str(a.get('model_sha256', ''))[:12]}`)  \n"
            f"**method** {a.get('method')} · **tiles** {a.get('n_tiles')} · "
            f"{a.get('size')} px at {a.get('mpp')} µm/px · overlay {a.get('overlay_mpp')} µm/px  \n"
            f"**trust** {trust_line(read_trust(a))}"
        )
    if cat.skipped:
        with st.sidebar.expander(f"{len(cat.skipped)} file(s) skipped"):
            for s in cat.skipped:
                st.write(s)
    tab_slide, tab_audit, tab_models, tab_mitigation = st.tabs(
        ["Slide", "Audit findings", "Models", "Mitigation"]
    )
    with tab_audit:
        _audit_panel(entry, cat)
    with tab_models:
        _models_panel(entry, cat)
    with tab_mitigation:
        mitigation_panel(cat, _model)
    with tab_slide:
        if entry is None:
            st.info("Nothing to show: run `pathxai demo --out DIR` or `pathxai heatmap ... --out DIR`.")
            return
        _slide_panel(entry, cat, cfg, layer, opacity)
        _region_panel(entry, cat, method)
