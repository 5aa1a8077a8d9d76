"""Fixtures of the audit tests: a small real GlaS subset at low resolution, and tiny trained models."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from pathxai.audit.cohort import AuditItem
from pathxai.manifest import ManifestRecord, read_manifest, resolve
from pathxai.model import ModelCard
from pathxai.model.architectures import CompactCNN
from pathxai.model.datasets import read_rgb, rescale_to_mpp
from pathxai.pixels import tissue_fraction

REPO = Path(__file__).resolve().parents[2]
MPP = 2.48  # quarter of GlaS resolution: images ~194 x 130 px, fast
SIZE = 64


def _select(records: list[ManifestRecord], n_per_class: int) -> list[ManifestRecord]:
    """Round-robin over patients so the subset spans many patients of each class."""
    out = []
    for cls in (1, 0):
        by_pat: dict[str, list[ManifestRecord]] = defaultdict(list)
        for r in records:
            if r.tumour == cls:
                by_pat[r.group].append(r)
        queues = [by_pat[p] for p in sorted(by_pat)]
        picked: list[ManifestRecord] = []
        while len(picked) < n_per_class and any(queues):
            for q in queues:
                if q and len(picked) < n_per_class:
                    picked.append(q.pop(0))
        out += picked
    return out


@pytest.fixture(scope="session")
def glas_subset(glas_dir: Path) -> tuple[list[ManifestRecord], list[np.ndarray]]:
    """20 tumour + 20 non-tumour GlaS images (many patients) at 2.48 µm/px."""
    man = read_manifest(REPO / "data_manifests" / "glas.csv")
    recs = _select(list(man.records), 20)
    imgs = [rescale_to_mpp(read_rgb(resolve(r, glas_dir)), r.mpp or 0.62005, MPP) for r in recs]
    return recs, imgs


def make_items(
    recs: list[ManifestRecord], imgs: list[np.ndarray], meta_override: dict[str, dict[str, str]] | None = None
) -> list[AuditItem]:
    items = []
    for r, im in zip(recs, imgs, strict=True):
        meta = {
            "patient": r.patient or r.id,
            "site": r.site or "",
            "scanner": r.scanner or "",
            "split": r.split or "",
        }
        meta["grade"] = r.extra.get("grade", "")
        meta.update((meta_override or {}).get(r.id, {}))
        items.append(AuditItem(r.id, im, MPP, MPP / (r.mpp or 0.62005), r.tumour, meta))
    return items


def tiny_card() -> ModelCard:
    return ModelCard(
        arch="compact_cnn",
        classes=("non-tumour", "tumour"),
        tumour_index=1,
        input_size=SIZE,
        mpp=MPP,
        mean=(0.75, 0.6, 0.75),
        std=(0.2, 0.2, 0.2),
        arch_kwargs={"widths": [8, 16, 32, 32]},
    )


def train_tiny(
    imgs: list[np.ndarray], labels: list[int], steps: int = 40, seed: int = 0
) -> tuple[torch.nn.Module, ModelCard]:
    """A few dozen AdamW steps of a small CompactCNN on random 64 px tissue crops."""
    from pathxai.model import preprocess

    torch.manual_seed(seed)
    card = tiny_card()
    net = CompactCNN(num_classes=2, widths=(8, 16, 32, 32))
    rng = np.random.default_rng(seed)
    crops, ys = [], []
    for im, y in zip(imgs, labels, strict=True):
        h, w = im.shape[:2]
        n = 0
        for _ in range(40):
            y0, x0 = int(rng.integers(0, h - SIZE + 1)), int(rng.integers(0, w - SIZE + 1))
            c = im[y0 : y0 + SIZE, x0 : x0 + SIZE]
            if tissue_fraction(c) >= 0.3:
                crops.append(c)
                ys.append(y)
                n += 1
            if n >= 8:
                break
    x = preprocess(np.stack(crops), card)
    yt = torch.as_tensor(ys)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(steps):
        idx = torch.as_tensor(rng.choice(len(yt), 24, replace=False))
        loss = torch.nn.functional.cross_entropy(net(x[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return net, card


def with_heat(items: list[AuditItem], net: torch.nn.Module, card: ModelCard) -> list[AuditItem]:
    """Explain every item with LRP (tumour class) through the pipeline's tiling."""
    import dataclasses

    from pathxai.audit.heat import heat_of_image
    from pathxai.explain import Explainer

    with Explainer(net, "lrp", target_class=card.tumour_index) as ex:
        return [dataclasses.replace(it, heat=heat_of_image(it.image, ex, card)) for it in items]


@pytest.fixture(scope="session")
def pen_cohort(glas_subset):
    """Blue pen strokes on 16 of the 20 tumour images; a model trained a few steps on them; explained items."""
    from tests.audit.plant import draw_pen

    recs, imgs = glas_subset
    rng = np.random.default_rng(0)
    marked, masks = [], []
    k = 0
    for r, im in zip(recs, imgs, strict=True):
        if r.tumour == 1 and k % 5 != 4:
            m_img, m = draw_pen(im, rng)
            marked.append(m_img)
            masks.append(m)
        else:
            marked.append(im)
            masks.append(np.zeros(im.shape[:2], bool))
        k += r.tumour == 1
    net, card = train_tiny(marked, [int(r.tumour) for r in recs])
    items = with_heat(make_items(recs, marked), net, card)
    return {"items": items, "masks": masks, "net": net, "card": card, "images": marked}


@pytest.fixture(scope="session")
def clean_model(glas_subset):
    """The same tiny model trained on the unmodified images."""
    recs, imgs = glas_subset
    return train_tiny(imgs, [int(r.tumour) for r in recs], steps=30)
