"""Measured latency: the third level of efficiency figures (after mask-aware theory and compact counts).

What is timed: one forward pass in eval mode without gradients, on the run's device, of a random batch laid out
as the network's training batches are (NHWC for a channels_last network), waiting for the accelerator before
the clock is read.

How, per batch size: each network first runs ``WARMUP`` untimed passes (allocations, kernel plans); then the
networks take turns, one timed pass each per round, always in the order given (dense, masked, compact, dense,
masked, compact, ...), so that a change of load on the machine reaches all of them alike. Rounds go on until
``BUDGET_S`` seconds have passed, with at least ``MIN_ROUNDS`` and at most ``MAX_ROUNDS`` of them (a small
network's figures settle long before the budget, and a test suite times many small networks).

What is recorded, per network and batch size: the median of its round times (``latency_ms``) and their
interquartile range (``latency_iqr_ms``: third quartile minus first, quartiles interpolated linearly between
the sorted times). A ratio of two networks (``latency_ratio``: compact over dense) is paired: the median over
rounds of the ratio of the two networks' passes in the same round, so load that changed between rounds
cancels instead of deciding which network looked slower.

``latency_unstable`` is true when any figure's IQR exceeds ``UNSTABLE_SPREAD`` (0.5) times its median. Measured
on the 2-core machine this was written on (digits MLP, 30-180 us a pass): IQR / median 0.02-0.03 while the load
was steady, up to 0.4 while other processes came and went, 0.4-0.7 under a load of 1.5-2x its cores. A spread of
half the median means the typical pass time itself moved during the measurement, so a median, and a ratio of
two, may be off by much more than the differences a pruning paper reports; such figures are kept, flagged, to
be timed again on an idle machine rather than averaged.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from torch import nn

WARMUP = 3  # untimed passes per network before the timed rounds
MIN_ROUNDS = 5  # enough for quartiles, whatever the budget
MAX_ROUNDS = 200  # a small network stops here, long before the budget
BUDGET_S = 1.0  # per batch size, all networks together: rounds stop after this (at least MIN_ROUNDS)
UNSTABLE_SPREAD = 0.5  # IQR over median above which a figure is flagged unstable (see the module docstring)

clock = time.perf_counter  # a module attribute, so that a test can put a fake clock in its place


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device``, so that a clock read afterwards covers it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _channels_last(model: nn.Module) -> bool:
    """Whether ``model`` was converted to channels_last (``channels_last=true``): a convolution's weight is laid
    out NHWC and not NCHW (a 1x1 or single-channel weight is both, and decides nothing)."""
    return any(isinstance(m, nn.Conv2d) and not m.weight.is_contiguous()
               and m.weight.is_contiguous(memory_format=torch.channels_last) for m in model.modules())


def _batch(model: nn.Module, input_shape: tuple[int, ...], batch: int, device: torch.device) -> torch.Tensor:
    """``batch`` random samples of ``input_shape``, laid out as ``model`` trains on them."""
    x = torch.randn(batch, *input_shape, device=device)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 and _channels_last(model) else x


def iqr(values: list[float]) -> float:
    """Interquartile range of ``values`` (at least two): third quartile minus first, linearly interpolated."""
    first, _, third = statistics.quantiles(values, n=4, method="inclusive")
    return third - first


def rounds_ms(passes: dict[str, Callable[[], object]], device: torch.device) -> dict[str, list[float]]:
    """Milliseconds of each of ``passes`` per round, the passes taking turns in their order after ``WARMUP``
    untimed rounds; rounds as the module docstring says."""
    for _ in range(WARMUP):
        for run in passes.values():
            run()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in passes}
    rounds, began = 0, clock()
    while rounds < MIN_ROUNDS or (rounds < MAX_ROUNDS and clock() - began < BUDGET_S):
        for name, run in passes.items():
            start = clock()
            run()
            synchronize(device)
            times[name].append(1000.0 * (clock() - start))
        rounds += 1
    return times


@dataclass(frozen=True)
class Latency:
    """Round times of networks timed in turns: ``times[name]["b<batch>"]`` holds one figure in milliseconds per
    round, the rounds of one batch size aligned across networks."""

    times: dict[str, dict[str, list[float]]]

    def _each(self, reduce: Callable[[list[float]], float]) -> dict[str, dict[str, float]]:
        return {name: {key: reduce(values) for key, values in batches.items()} for name, batches in self.times.items()}

    def medians(self) -> dict[str, dict[str, float]]:
        """``{name: {"b<batch>": median ms}}``: the ``latency_ms`` entry."""
        return self._each(statistics.median)

    def iqrs(self) -> dict[str, dict[str, float]]:
        """``{name: {"b<batch>": interquartile range in ms}}``: the ``latency_iqr_ms`` entry."""
        return self._each(iqr)

    def unstable(self) -> bool:
        """True when any figure's IQR exceeds ``UNSTABLE_SPREAD`` times its median."""
        medians = self.medians()
        return any(spread > UNSTABLE_SPREAD * medians[name][key]
                   for name, spreads in self.iqrs().items() for key, spread in spreads.items())

    def ratio(self, over: str, under: str, key: str) -> float:
        """Paired ratio ``over / under`` at batch ``key``: the median over rounds of the two passes' ratio."""
        return statistics.median(a / b for a, b in zip(self.times[over][key], self.times[under][key], strict=True))


@torch.inference_mode()
def latency_table(models: dict[str, tuple[nn.Module, tuple[int, ...]]], batches: list[int],
                  device: torch.device) -> Latency:
    """Every model (with its own input shape) timed in turns with the others, at each batch size; each model is
    left in its own training mode."""
    modes = {name: model.training for name, (model, _) in models.items()}
    times: dict[str, dict[str, list[float]]] = {name: {} for name in models}
    try:
        for model, _ in models.values():
            model.eval()
        for batch in dict.fromkeys(batches):  # a training batch of 1 is timed once
            passes = {name: partial(model, _batch(model, shape, batch, device))
                      for name, (model, shape) in models.items()}
            for name, values in rounds_ms(passes, device).items():
                times[name][f"b{batch}"] = values
    finally:
        for name, (model, _) in models.items():
            model.train(modes[name])
    return Latency(times)
