"""Size and speed of a network: parameters, multiply-accumulates and measured CPU latency."""

from __future__ import annotations

import statistics
import time

import torch
import torch_pruning as tp
from torch import nn

__all__ = ["count_macs_params", "count_params", "cpu_latency_ms", "size_metrics"]


def count_params(model: nn.Module) -> int:
    """Count parameters (weights and biases; buffers excluded)."""
    return int(sum(p.numel() for p in model.parameters()))


def count_macs_params(model: nn.Module, input_size: int) -> tuple[int, int]:
    """Multiply-accumulates of one ``input_size`` RGB image, and parameters.

    Counted by ``torch_pruning.utils.count_ops_and_params`` on a copy of the model.

    Parameters
    ----------
    model
        The network.
    input_size
        Side of the square input in pixels.

    Returns
    -------
    tuple[int, int]
        ``(macs, params)``.
    """
    if int(input_size) <= 0:
        raise ValueError(f"input_size must be positive, got {input_size}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    example = torch.zeros(1, 3, int(input_size), int(input_size), device=device)
    was_training = model.training
    try:
        with torch.no_grad():
            macs, params = tp.utils.count_ops_and_params(model, example)
    finally:
        model.train(was_training)
    return int(macs), int(params)


def cpu_latency_ms(
    model: nn.Module,
    input_size: int,
    *,
    batch_size: int = 16,
    repeats: int = 20,
    warmup: int = 3,
    threads: int = 1,
) -> float:
    """Median wall time of one forward pass of a batch on the CPU, in milliseconds.

    Parameters
    ----------
    model
        The network (run in eval mode without gradients; its mode is restored).
    input_size
        Side of the square input patches.
    batch_size
        Patches per forward pass.
    repeats
        Timed passes; the median is returned.
    warmup
        Untimed passes first.
    threads
        ``torch.set_num_threads`` during the measurement (restored afterwards).

    Returns
    -------
    float
        Median latency in ms.
    """
    if repeats < 1 or warmup < 0 or batch_size < 1 or threads < 1:
        raise ValueError("repeats, batch_size and threads must be >= 1 and warmup >= 0")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, int(input_size), int(input_size), generator=gen)
    old_threads = torch.get_num_threads()
    was_training = model.training
    model.eval()
    times: list[float] = []
    try:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
    return float(statistics.median(times))


def size_metrics(
    model: nn.Module, input_size: int, latency: bool = False, **latency_options: int
) -> dict[str, float]:
    """Measure parameters, MACs and optionally CPU latency as a flat dict.

    Parameters
    ----------
    model
        The network.
    input_size
        Side of the square input.
    latency
        Also measure :func:`cpu_latency_ms` (slow; do it on a quiet machine).
    **latency_options
        Passed to :func:`cpu_latency_ms`.

    Returns
    -------
    dict[str, float]
        ``params``, ``macs`` and, if asked, ``latency_ms`` with ``latency_batch`` and ``latency_threads``.
    """
    macs, params = count_macs_params(model, input_size)
    out: dict[str, float] = {"params": float(params), "macs": float(macs)}
    if latency:
        out["latency_ms"] = cpu_latency_ms(model, input_size, **latency_options)
        out["latency_batch"] = float(latency_options.get("batch_size", 16))
        out["latency_threads"] = float(latency_options.get("threads", 1))
    return out
