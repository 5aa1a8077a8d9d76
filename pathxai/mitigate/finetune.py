"""Fine-tuning a model to drop a shortcut: the loop, and the two concept edits it can apply in a layer.

* RR-ClArC (Pahde et al. 2025): the loss gains ``lam * mean((∇_a s · v)^2)``, the squared gradient of
  the class-score difference ``s`` along the concept direction ``v`` in the layer's activations ``a``:
  the model is taught not to respond to the concept.
* A-ClArC (Anders et al. 2022): during fine-tuning a random half of every batch gets the concept
  added in the layer (its component set to the artifact level) whatever its label, so the concept
  stops predicting the label.

Data-side fixes (masked artifacts, recoloured stains, re-weighted sampling) come in as images,
sampling weights and an augmentation. Batch-norm statistics are frozen (few images, no drift of
the clean behaviour) and the seed fixes sampling and augmentation. With a concept edit, the layers up to the concept layer are frozen
(``freeze_below``): fine-tuning the whole network on the biased data lets it re-encode the artifact
along a new direction (measured in benchmarks/mitigate.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pathxai.mitigate.cav import Concept, layer_module
from pathxai.model.card import ModelCard
from pathxai.model.datasets import PatchDataset

__all__ = ["ConceptEdit", "FinetuneSettings", "finetune", "freeze_through"]


@dataclass(frozen=True)
class FinetuneSettings:
    """Fine-tuning hyper-parameters (small: the model is already trained)."""

    epochs: int = 3
    lr: float = 3e-4
    batch_size: int = 32
    weight_decay: float = 1e-4
    stride: int | None = None  # None: half the patch size
    min_tissue: float = 0.3
    seed: int = 0
    threads: int = 1
    rr_lambda: float = 100.0
    freeze_below: bool = True
    prune_channels: int = 0  # method prune: channels removed (0: 5 % of the prunable conv channels)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        import dataclasses

        return dataclasses.asdict(self)


class ConceptEdit:
    """A forward hook on the concept layer for RR-ClArC (keep the activations) or A-ClArC (add the concept).

    Parameters
    ----------
    concept
        The direction, the clean and artifact levels.
    mode
        ``"rr"`` or ``"add"``.
    """

    def __init__(self, concept: Concept, mode: str) -> None:
        if mode not in ("rr", "add"):
            raise ValueError(f"mode must be 'rr' or 'add', got {mode!r}")
        self.concept, self.mode = concept, mode
        self.acts: torch.Tensor | None = None
        self.add_mask: torch.Tensor | None = None

    def _v(self, a: torch.Tensor) -> torch.Tensor:
        return self.concept.direction.to(a.dtype).view((1, -1) + (1,) * (a.ndim - 2))

    def hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        """Keep (``rr``) or edit (``add``) the layer's output."""
        if self.mode == "rr":
            if not output.requires_grad:  # the layers below are frozen: differentiate from here
                output = output.detach().requires_grad_(True)
            self.acts = output
            return output
        if self.add_mask is None:
            return output
        v = self._v(output)
        coef = (output * v).sum(dim=1, keepdim=True)
        shifted = output + v * (self.concept.artifact_level - coef)
        m = self.add_mask.to(output.dtype).view((-1,) + (1,) * (output.ndim - 1))
        return m * shifted + (1 - m) * output

    def penalty(self, logits: torch.Tensor, tumour: int) -> torch.Tensor:
        """RR-ClArC: mean squared gradient of the score difference along the concept (per sample, over positions)."""
        if self.acts is None:
            raise RuntimeError("no activations captured; run a forward pass first")
        score = logits[:, tumour] - logits[:, 1 - tumour] if logits.shape[1] == 2 else logits[:, tumour]
        (grad,) = torch.autograd.grad(score.sum(), self.acts, create_graph=True)
        along = (grad * self._v(grad)).flatten(1).sum(dim=1)
        return (along**2).mean()


def freeze_through(model: nn.Module, layer: str) -> int:
    """Turn off gradients of every parameter up to and including ``layer`` (in module order); the count frozen.

    The concept edits then train only the layers after the concept layer (as A-ClArC does), so the
    layers before it cannot re-encode the artifact along a new direction.
    """
    n, inside = 0, False
    for name, module in model.named_modules():
        if inside and name != layer and not name.startswith(layer + "."):
            break
        inside = inside or name == layer
        for p in module.parameters(recurse=False):
            p.requires_grad_(False)
            n += p.numel()
    return n


def _freeze_batch_norm(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _patches(
    card: ModelCard,
    images: Sequence[np.ndarray],
    labels: Sequence[int],
    settings: FinetuneSettings,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None,
) -> PatchDataset:
    size = card.input_size
    ds = PatchDataset(
        images,
        labels,
        size,
        settings.stride or max(1, size // 2),
        min_tissue=settings.min_tissue,
        mean=card.mean,
        std=card.std,
        augment=augment,
        seed=settings.seed,
    )
    if len(ds) == 0:
        raise ValueError("no training patches with enough tissue")
    return ds


def _class_weighted_loss(ds: PatchDataset, num_classes: int) -> nn.CrossEntropyLoss:
    """Cross-entropy with class weights inverse to the patch counts."""
    counts = np.bincount(ds.patch_labels, minlength=num_classes).astype(np.float64)
    class_w = torch.tensor(counts.sum() / np.maximum(counts, 1) / num_classes, dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=class_w)


@dataclass
class _Loop:
    """What one fine-tuning step needs: the network, optimiser, loss, patches and sampling."""

    net: nn.Module
    opt: torch.optim.Optimizer
    loss_fn: nn.Module
    ds: PatchDataset
    rng: np.random.Generator
    probs: np.ndarray | None
    edit: ConceptEdit | None
    tumour: int
    settings: FinetuneSettings

    def step(self) -> tuple[float, float]:
        """One optimiser step on a sampled batch; the loss and the RR-ClArC penalty."""
        st, ds, edit = self.settings, self.ds, self.edit
        replace = self.probs is not None or len(ds) < st.batch_size
        idx = self.rng.choice(len(ds), st.batch_size, replace=replace, p=self.probs)
        batch = [ds[int(i)] for i in idx]
        x = torch.stack([b[0] for b in batch])
        y = torch.tensor([b[1] for b in batch])
        if edit is not None and edit.mode == "add":
            edit.add_mask = torch.as_tensor(self.rng.random(len(idx)) < 0.5)
        logits = self.net(x)
        loss = self.loss_fn(logits, y)
        pen = torch.zeros(())
        if edit is not None and edit.mode == "rr":
            pen = edit.penalty(logits, self.tumour)
            loss = loss + st.rr_lambda * pen
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach()), float(pen.detach())


def _run_epochs(
    loop: _Loop, steps_per_epoch: int, progress: Callable[[int, int, float], None] | None
) -> list[dict[str, float]]:
    history: list[dict[str, float]] = []
    total = steps_per_epoch * loop.settings.epochs
    step = 0
    for epoch in range(loop.settings.epochs):
        loop.ds.set_epoch(epoch)
        losses, pens = [], []
        for _ in range(steps_per_epoch):
            loss, pen = loop.step()
            losses.append(loss)
            pens.append(pen)
            step += 1
            if progress is not None:
                progress(step, total, loss)
        history.append(
            {"epoch": float(epoch), "loss": float(np.mean(losses)), "penalty": float(np.mean(pens))}
        )
    return history


def finetune(
    model: nn.Module,
    card: ModelCard,
    images: Sequence[np.ndarray],
    labels: Sequence[int],
    settings: FinetuneSettings,
    *,
    weights: Sequence[float] | None = None,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    edit: ConceptEdit | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Fine-tune a copy of ``model`` on patches of ``images``.

    Parameters
    ----------
    model, card
        The trained model (not modified) and its card (patch size, normalisation).
    images, labels
        Training images at ``card.mpp`` and their class indices.
    settings
        Hyper-parameters.
    weights
        Per-image sampling weights (re-balancing); uniform when ``None``.
    augment
        ``(uint8 patch, rng) -> uint8 patch`` applied to every training patch.
    edit
        RR-ClArC penalty or A-ClArC concept addition in the concept layer.
    progress
        Called with ``(step, steps, loss)``.

    Returns
    -------
    tuple[torch.nn.Module, list[dict]]
        The fine-tuned copy (eval mode) and the per-epoch mean loss (and penalty).
    """
    torch.manual_seed(settings.seed)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, settings.threads))
    net = copy.deepcopy(model)
    ds = _patches(card, images, labels, settings, augment)
    rng = np.random.default_rng(settings.seed)
    loss_fn = _class_weighted_loss(ds, card.num_classes)
    probs = None
    if weights is not None:
        w = np.asarray(weights, np.float64)[ds.patch_images]
        probs = w / w.sum()
    steps_per_epoch = max(1, len(ds) // settings.batch_size)
    if edit is not None and settings.freeze_below:
        freeze_through(net, edit.concept.layer)
    opt = torch.optim.AdamW(
        [p for p in net.parameters() if p.requires_grad], lr=settings.lr, weight_decay=settings.weight_decay
    )
    handle = (
        layer_module(net, edit.concept.layer).register_forward_hook(edit.hook) if edit is not None else None
    )
    loop = _Loop(net, opt, loss_fn, ds, rng, probs, edit, card.tumour_index, settings)
    try:
        net.train()
        _freeze_batch_norm(net)
        history = _run_epochs(loop, steps_per_epoch, progress)
    finally:
        if handle is not None:
            handle.remove()
        torch.set_num_threads(old_threads)
    return net.eval(), history
