"""One interface for every attribution method: :class:`Explainer` and :func:`explain`."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn

from pathxai.explain.explanation import Explanation
from pathxai.explain.methods import Method, make_method

Tensor = torch.Tensor


class Explainer:
    """An attribution method prepared once for one model, then called per batch.

    Construction deep-copies the model, fuses batch norm into the preceding convolutions (once) and
    registers the method's hooks on the copy; the caller's model is never modified. :meth:`close` (or leaving
    a ``with`` block) removes every hook.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits ``(N, C)``.
    method : str
        A name from :data:`pathxai.explain.METHODS`; ``"lrp"`` is the fast production path.
    target_class : int or None
        Class explained when a call passes ``target=None``. ``None``: the model card's ``tumour_index``
        (``model.pathxai_card``) if there is one, else 1 (tumour).
    batch_size : int or None
        Largest chunk run at once; bigger batches are split (bounds memory). ``None``: no splitting.
    channels_last : bool
        Run the model copy in ``channels_last`` memory format (default: on; on this project's CPU it makes
        both the forward pass and LRP about 1.5x faster, see ``benchmarks/explain.md``). Results equal
        the contiguous layout's up to float rounding.
    dtype : torch.dtype or None
        Compute dtype of the model copy and input (e.g. ``torch.bfloat16``); ``None`` keeps the model's.
        Results are returned as float32 either way.
    **options
        Passed to the method (e.g. ``epsilon``, ``mean``/``std`` for ``lrp_epsilon_gamma_box``, ``n_iter``).

    Raises
    ------
    ValueError
        For an unknown method name (the message lists the valid ones) or a bad option.
    pathxai.errors.ExplainError
        If the method cannot be applied to this model.
    """

    def __init__(
        self,
        model: nn.Module,
        method: str = "lrp",
        *,
        target_class: int | None = None,
        batch_size: int | None = None,
        channels_last: bool = True,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        if target_class is None:
            target_class = int(getattr(getattr(model, "pathxai_card", None), "tumour_index", 1))
        if int(target_class) < 0:
            raise ValueError(f"target_class must be a class index >= 0, got {target_class}")
        self.method = method
        self.target_class = int(target_class)
        self.batch_size = batch_size
        self.channels_last = channels_last
        self._impl: Method | None = make_method(method, model, **options)
        copy = self._impl.model
        if dtype is not None:
            copy.to(dtype=dtype)
        if channels_last:
            copy.to(memory_format=torch.channels_last)
        first = next(copy.parameters(), None)
        self.device = first.device if first is not None else torch.device("cpu")
        self.dtype = first.dtype if first is not None else torch.float32

    @property
    def model(self) -> nn.Module:
        """The prepared private copy of the model (hooks registered until :meth:`close`)."""
        if self._impl is None:
            raise RuntimeError("this Explainer is closed")
        return self._impl.model

    def _targets(self, target: int | Tensor | np.ndarray | None, n: int) -> Tensor:
        if target is None:
            return torch.full((n,), self.target_class, dtype=torch.int64)
        if isinstance(target, (int, np.integer)):
            if int(target) < 0:
                raise ValueError(f"target must be a class index >= 0, got {target}")
            return torch.full((n,), int(target), dtype=torch.int64)
        t = torch.as_tensor(target).to(torch.int64).reshape(-1)
        if t.numel() == 1:
            return t.expand(n).clone()
        if t.numel() != n:
            raise ValueError(f"target has {t.numel()} entries for a batch of {n}")
        if bool((t < 0).any()):
            raise ValueError("target classes must be >= 0")
        return t

    def __call__(self, batch: Tensor, target: int | Tensor | None = None) -> Explanation:
        """Explain a batch.

        Parameters
        ----------
        batch : torch.Tensor
            ``(N, C, H, W)`` float, normalised as the model expects.
        target : int, tensor of shape (N,), or None
            Class to explain per sample; ``None`` means ``target_class``.

        Returns
        -------
        Explanation
            Relevance ``(N, H, W)`` and logits/probabilities from the same forward pass.
        """
        if self._impl is None:
            raise RuntimeError("this Explainer is closed")
        if not isinstance(batch, Tensor):
            raise ValueError(f"batch must be a torch.Tensor, got {type(batch).__name__}")
        if batch.ndim != 4 or not batch.is_floating_point():
            raise ValueError(
                f"batch must be a float tensor (N, C, H, W), got {batch.dtype} {tuple(batch.shape)}"
            )
        n = batch.shape[0]
        targets = self._targets(target, n)
        if n == 0:
            empty = np.zeros((0, 0), np.float32)
            return Explanation(
                np.zeros((0, *batch.shape[2:]), np.float32), empty, empty, targets.numpy(), self.method
            )
        step = self.batch_size or n
        relevances, logits_parts = [], []
        with torch.inference_mode(False):
            for start in range(0, n, step):
                x = batch[start : start + step].to(device=self.device, dtype=self.dtype)
                if x.is_inference():
                    x = x.clone()
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                logits, attribution = self._impl(x, targets[start : start + step])
                relevances.append(attribution.detach().sum(dim=1).float().cpu())
                logits_parts.append(logits.detach().float().cpu())
        logits_t = torch.cat(logits_parts)
        return Explanation(
            relevance=torch.cat(relevances).numpy().astype(np.float32, copy=False),
            logits=logits_t.numpy(),
            probabilities=torch.softmax(logits_t, dim=1).numpy(),
            target=targets.numpy(),
            method=self.method,
        )

    def close(self) -> None:
        """Remove every hook from the model copy and release it."""
        if self._impl is not None:
            self._impl.close()
            self._impl = None

    def __enter__(self) -> Explainer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def explain(
    model: nn.Module,
    batch: Tensor,
    target: int | Tensor | None = None,
    method: str = "lrp",
    **options: Any,
) -> Explanation:
    """Explain one batch with a one-shot :class:`Explainer` (prepare, call, close).

    For many batches build an :class:`Explainer` once instead: preparing the model costs a deep copy.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits.
    batch : torch.Tensor
        ``(N, C, H, W)`` float input.
    target : int, tensor (N,), or None
        Class to explain; ``None`` means ``target_class`` (default 1, tumour).
    method : str
        A name from :data:`pathxai.explain.METHODS`.
    **options
        Passed to :class:`Explainer`.

    Returns
    -------
    Explanation
    """
    with Explainer(model, method, **options) as explainer:
        return explainer(batch, target)
