"""SpRAy-style strategy discovery (Lapuschkin et al. 2019): cluster downsized heatmaps, read the clusters.

Tile heatmaps for the tumour class are downsized, L1-normalised and flattened; a symmetric k-nearest-
neighbour graph gives a normalised graph Laplacian whose smallest eigenvalues are computed; the
number of clusters is the largest **eigengap**; clusters come from k-means on the row-normalised
eigenvectors (spectral clustering). Each cluster is then described by who is in it: a cluster
dominated by one site, scanner or patient (while that value is a minority overall), or by tiles
showing an artifact, is a strategy tied to something other than tumour morphology.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy.sparse import csgraph
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from pathxai.audit.cohort import AuditItem
from pathxai.audit.findings import BiasFinding, Region, Thresholds
from pathxai.audit.grade import graded
from pathxai.audit.registry import CheckContext, register_check, run_checks

__all__ = ["SprayResult", "check", "cluster_heatmaps", "compute", "result_of"]


@dataclass(frozen=True)
class SprayResult:
    """Clusters of tile heatmaps.

    Attributes
    ----------
    members
        ``(item index, tile index)`` per clustered tile.
    labels
        Cluster of each member.
    eigenvalues
        Smallest eigenvalues of the normalised Laplacian (ascending).
    k
        Number of clusters chosen by the eigengap.
    centrality
        Distance of each member to its cluster centre in the spectral embedding (small = typical).
    attributes
        Per member: ``patient``, ``site``, ``scanner``, ``label``, ``artifact`` (dominant artifact kind or "none").
    artifact_base
        Share of *all* explained tiles (not only the clustered ones) showing each artifact kind.
    """

    members: tuple[tuple[int, int], ...]
    labels: np.ndarray
    eigenvalues: np.ndarray
    k: int
    centrality: np.ndarray
    attributes: tuple[Mapping[str, str], ...]
    artifact_base: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def summary(self) -> list[dict[str, object]]:
        """Per cluster: size and composition (JSON-ready)."""
        out = []
        for c in range(self.k):
            sel = [i for i in range(len(self.labels)) if self.labels[i] == c]
            comp = {}
            for key in ("patient", "site", "scanner", "label", "artifact"):
                cnt = Counter(self.attributes[i][key] for i in sel)
                comp[key] = dict(cnt.most_common(5))
            out.append({"cluster": c, "size": len(sel), "composition": comp})
        return out


def cluster_heatmaps(
    maps: np.ndarray, k_max: int = 8, n_neighbors: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Spectral clustering with the eigengap heuristic.

    Parameters
    ----------
    maps
        ``(N, h, w)`` heatmaps (any scale; each is L1-normalised here).
    k_max
        Largest number of clusters considered.
    n_neighbors
        Neighbours of the affinity graph.
    seed
        k-means seed.

    Returns
    -------
    tuple
        ``(labels (N,), eigenvalues (k_max + 1,), k, distance to centre (N,))``.
    """
    n = len(maps)
    if n < 4:
        raise ValueError(f"need at least 4 heatmaps to cluster, got {n}")
    x = maps.reshape(n, -1).astype(np.float64)
    x = x / np.maximum(np.abs(x).sum(axis=1, keepdims=True), 1e-12)
    nn_k = min(n_neighbors, n - 1)
    with threadpool_limits(1):
        graph = NearestNeighbors(n_neighbors=nn_k).fit(x).kneighbors_graph(x, mode="connectivity")
        adj = ((graph + graph.T) > 0).astype(np.float64).toarray()
        lap = csgraph.laplacian(adj, normed=True)
        vals, vecs = np.linalg.eigh(lap)
        m = min(k_max + 1, n - 1)
        vals, vecs = vals[:m], vecs[:, :m]
        gaps = np.diff(vals)
        # k clusters <=> gap between eigenvalue k-1 and k (0-based); consider k in 2..k_max
        k = int(np.argmax(gaps[1 : min(k_max, m - 1)]) + 2) if m > 2 else 1
        emb = vecs[:, :k]
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(emb)
    dist = np.linalg.norm(emb - km.cluster_centers_[km.labels_], axis=1)
    return km.labels_.astype(int), vals, k, dist


def _tile_artifact(masks: Mapping[str, np.ndarray] | None, y: int, x: int, size: int, min_frac: float) -> str:
    if not masks:
        return "none"
    best, best_frac = "none", min_frac
    for kind, m in masks.items():
        if kind in ("background", "white_spot"):
            continue
        frac = float(m[y : y + size, x : x + size].mean())
        if frac >= best_frac:
            best, best_frac = kind, frac
    return best


def compute(
    items: Sequence[AuditItem],
    artifact_masks: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    thresholds: Thresholds | None = None,
) -> SprayResult | None:
    """Cluster the tumour-class heatmaps of the tiles the model calls tumour (all tiles if too few)."""
    th = thresholds or Thresholds()
    members, maps, attrs = [], [], []
    for i, it in enumerate(items):
        if it.heat is None:
            continue
        for j, p in enumerate(it.heat.tiles):
            members.append((i, j, p.probability))
    if len(members) < 20:
        return None
    tumour = [m for m in members if m[2] >= 0.5]
    chosen = tumour if len(tumour) >= 20 else members
    rng = np.random.default_rng(int(th.setting("seed")))
    n_max = int(th.setting("spray_max_patches"))
    if len(chosen) > n_max:
        chosen = [chosen[int(i)] for i in np.sort(rng.choice(len(chosen), n_max, replace=False))]
    for i, j, _ in chosen:
        it = items[i]
        p = it.heat.tiles[j]  # type: ignore[union-attr]
        maps.append(p.relevance)
        masks = artifact_masks.get(it.id) if artifact_masks else None
        attrs.append(
            {
                "patient": it.meta.get("patient") or it.id,
                "site": it.meta.get("site") or "-",
                "scanner": it.meta.get("scanner") or "-",
                "label": "-" if it.tumour is None else ("tumour" if it.tumour else "non-tumour"),
                "artifact": _tile_artifact(masks, p.y, p.x, p.size, 0.02),
            }
        )
    labels, vals, k, dist = cluster_heatmaps(np.stack(maps), seed=int(th.setting("seed")))
    base: Counter[str] = Counter()
    for i, j, _ in members:
        it = items[i]
        p = it.heat.tiles[j]  # type: ignore[union-attr]
        masks = artifact_masks.get(it.id) if artifact_masks else None
        base[_tile_artifact(masks, p.y, p.x, p.size, 0.02)] += 1
    artifact_base = {kind: c / len(members) for kind, c in base.items()}
    return SprayResult(
        tuple((i, j) for i, j, _ in chosen), labels, vals, k, dist, tuple(attrs), artifact_base
    )


def result_of(ctx: CheckContext) -> SprayResult | None:
    """:func:`compute` on ``ctx``'s items with their artifact masks (once per context)."""
    from pathxai.audit.artifacts import masks_of

    return ctx.memo("spray.result", lambda: compute(ctx.items, masks_of(ctx), ctx.thresholds))


def check(
    items: Sequence[AuditItem],
    thresholds: Thresholds | None = None,
    result: SprayResult | None = None,
    artifact_masks: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> list[BiasFinding]:
    """Clusters of heatmaps dominated by one site/scanner/patient or by an artifact.

    Returns
    -------
    list[BiasFinding]
        One finding per attribute (``sampling.spray:<attribute>``; ``artifact`` uses the
        class-correlated family), empty when there are too few heatmaps.
    """
    ctx = CheckContext(items, thresholds or Thresholds())
    ctx.provide("artifacts.masks", artifact_masks or {})
    if result is not None:
        ctx.provide("spray.result", result)
    return run_checks(ctx, module=__name__)


def _dominated(res: SprayResult, key: str, min_size: int) -> dict[str, object] | None:
    """The cluster most dominated by one value of attribute ``key`` (``None`` when none qualifies)."""
    n = len(res.labels)
    overall = Counter(a[key] for a in res.attributes)
    best: dict[str, object] | None = None
    for c in range(res.k):
        sel = np.nonzero(res.labels == c)[0]
        if len(sel) < min_size:
            continue
        cnt = Counter(res.attributes[i][key] for i in sel)
        for value, cc in cnt.items():
            if key == "artifact" and value == "none":
                continue
            share = cc / len(sel)
            if key == "artifact":
                # an artifact has no business in any tumour strategy: compare with its share of
                # all explained tiles, however common it is
                base = float(res.artifact_base.get(value, overall[value] / n))
                if share < 1.2 * base or share < 0.5:
                    continue
            else:
                base = overall[value] / n
                if base > 0.5 or share < 1.5 * base or share < 0.5:
                    continue
            if best is None or share > float(best["share"]):  # type: ignore[arg-type]
                best = {"cluster": c, "value": value, "share": share, "overall": base, "size": len(sel)}
    return best


def _cluster_evidence(
    items: Sequence[AuditItem], res: SprayResult, cluster: int
) -> tuple[list[str], list[Region]]:
    """Ids and tile regions of the 20 most typical members of ``cluster``."""
    regions: list[Region] = []
    ids: list[str] = []
    sel = np.nonzero(res.labels == cluster)[0]
    sel = sel[np.argsort(res.centrality[sel])]
    for m in sel[:20]:
        i, j = res.members[int(m)]
        it = items[i]
        p = it.heat.tiles[j]  # type: ignore[union-attr]
        x, y, w, h = it.l0_box(p.y, p.x, p.y + p.size, p.x + p.size)
        regions.append(Region(it.id, x, y, w, h, f"SpRAy cluster {cluster}", p.probability))
        if it.id not in ids:
            ids.append(it.id)
    return ids, regions


def _spray_message(head: str, key: str, best: dict[str, object] | None, sev: str) -> str:
    if best is None:
        return f"{head}; none is dominated by one {key}."
    return (
        f"{head} (eigengap). Cluster {best['cluster']} ({best['size']} tiles) is "
        f"{float(best['share']):.0%} {key} '{best['value']}' "  # type: ignore[arg-type]
        f"(overall {float(best['overall']):.0%}): "  # type: ignore[arg-type]
        + (
            f"the model has a strategy tied to this {key}; inspect the montage."
            if sev != "info"
            else "below the reporting threshold."
        )
    )


@register_check("sampling.spray")
def check_spray(ctx: CheckContext) -> list[BiasFinding]:
    """Per attribute (``sampling.spray:<artifact|site|scanner|patient>``): the most dominated heatmap cluster."""
    res = result_of(ctx)
    if res is None:
        return []
    n = len(res.labels)
    min_size = max(int(ctx.thresholds.setting("spray_min_cluster")), int(0.05 * n))
    findings = []
    for key in ("artifact", "site", "scanner", "patient"):
        if key != "artifact" and len({a[key] for a in res.attributes}) < 2:
            continue
        best = _dominated(res, key, min_size)
        ids, regions = _cluster_evidence(ctx.items, res, int(best["cluster"])) if best else ([], [])  # type: ignore[call-overload]
        head = f"SpRAy found {res.k} explanation strategies among {n} tumour-class tile heatmaps"
        findings.append(
            graded(
                ctx.thresholds,
                "class-correlated" if key == "artifact" else "sampling",
                f"sampling.spray:{key}",
                f"share of the most {key}-dominated heatmap cluster held by one {key} value",
                float(best["share"]) if best else 0.0,  # type: ignore[arg-type]
                partial(_spray_message, head, key, best),
                grade=best is not None,
                # a patient-specific strategy is a lead, not a verdict
                cap="medium" if key == "patient" else None,
                items=ids,
                regions=regions,
                details={"k": res.k, "eigenvalues": res.eigenvalues.tolist(), "best": best or {}},
            )
        )
    return findings
