"""Measured latency: the third level of efficiency figures (after mask-aware theory and compact counts).

A forward pass in eval mode without gradients, timed on the run's device after warm-up (waiting for
the accelerator before reading the clock), repeated, and the median taken, so one slow repetition on a
busy machine does not decide the figure.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

WARMUP = 2
REPEATS = 7
BUDGET_S = 2.0  # per model and batch size: stop repeating after this, with at least MIN_REPEATS timings
MIN_REPEATS = 3


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device``, so that a clock read afterwards covers it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _channels_last(model: nn.Module) -> bool:
    """Whether ``model`` was converted to channels_last (``channels_last=true``): a convolution's weight is laid
    out NHWC and not NCHW (a 1x1 or single-channel weight is both, and decides nothing)."""
    return any(isinstance(m, nn.Conv2d) and not m.weight.is_contiguous()
               and m.weight.is_contiguous(memory_format=torch.channels_last) for m in model.modules())


@torch.inference_mode()
def median_ms(model: nn.Module, input_shape: tuple[int, ...], batch: int, device: torch.device) -> float:
    """Median wall time in milliseconds of one forward pass of ``batch`` random samples of ``input_shape``,
    laid out as the model's training batches are (NHWC for a channels_last model)."""
    was_training = model.training
    model.eval()
    x = torch.randn(batch, *input_shape, device=device)
    if x.dim() == 4 and _channels_last(model):
        x = x.contiguous(memory_format=torch.channels_last)
    for _ in range(WARMUP):
        model(x)
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < REPEATS and (len(times) < MIN_REPEATS or time.perf_counter() - began < BUDGET_S):
        synchronize(device)
        start = time.perf_counter()
        model(x)
        synchronize(device)
        times.append(time.perf_counter() - start)
    model.train(was_training)
    return 1000.0 * statistics.median(times)


def latency_table(models: dict[str, tuple[nn.Module, tuple[int, ...]]], batches: list[int],
                  device: torch.device) -> dict[str, dict[str, float]]:
    """``{name: {"b<batch>": milliseconds}}`` for every model (with its own input shape) and batch size."""
    return {name: {f"b{b}": median_ms(model, shape, b, device) for b in batches}
            for name, (model, shape) in models.items()}
