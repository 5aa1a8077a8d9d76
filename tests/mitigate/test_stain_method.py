"""The data-side ``stain`` fix: recoloured copies must not carry the label (the over-correction of its first version)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
from torch import nn

import pathxai.mitigate.methods as methods
from pathxai.mitigate.evidence import Cohort, Evidence
from pathxai.mitigate.finetune import FinetuneSettings
from pathxai.mitigate.select import Target


def _tagging_transfer(calls: list[int]) -> Any:
    """Stand-in for ``stain_transfer``: the n-th transfer paints every image with the value 100 + n."""

    def make(donors: list[np.ndarray]) -> Any:
        tag = 100 + len(calls)
        calls.append(len(donors))
        return lambda im: np.full_like(im, tag)

    return make


def test_every_image_is_copied_into_both_stains_whatever_its_label(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    labels = [0, 0, 0, 1, 1, 1, 1, 1]
    imgs = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in labels]
    cohort = Cohort(0.5, imgs, labels, [f"i{i}" for i in range(8)], [], [], [])
    seen: dict[str, Any] = {}

    def fake_finetune(model, card, images, labs, settings, **kw):  # type: ignore[no-untyped-def]
        seen["images"], seen["labels"] = list(images), list(labs)
        return model, []

    calls: list[int] = []
    monkeypatch.setattr(methods, "stain_transfer", _tagging_transfer(calls))
    monkeypatch.setattr(methods, "finetune", fake_finetune)
    target = Target("stain.probe.label", "stain.probe.label", "high", 0.9, "stain")
    methods.run_method(
        "stain",
        nn.Identity(),
        None,
        cohort,
        Evidence(target),
        "",
        FinetuneSettings(),  # type: ignore[arg-type]
    )
    assert calls == [3, 5]  # one transfer fitted per class, on that class's images
    by_tag: dict[int, Counter[int]] = {}
    for im, y in zip(seen["images"], seen["labels"], strict=True):
        tag = int(im[0, 0, 0]) if (im == im[0, 0, 0]).all() and im[0, 0, 0] >= 100 else -1
        by_tag.setdefault(tag, Counter())[y] += 1
    # the originals unchanged, then each class's stain on *every* image, with its own label
    assert by_tag[-1] == Counter(labels)
    assert by_tag[100] == Counter(labels)
    assert by_tag[101] == Counter(labels)
