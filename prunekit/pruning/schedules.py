"""Sparsity schedules: how the target grows over the pruning stage.

Each schedule maps progress ``u`` in [0, 1] (between ``start`` and ``end``, as fractions of the pruning
stage) to the share of the way from the initial sparsity to the target. Every one is monotone, gives
exactly the initial sparsity before ``start`` and exactly the target from ``end`` on.
"""
from __future__ import annotations

import math
from typing import Callable

from omegaconf import DictConfig

from prunekit.engine import TrainHook
from prunekit.errors import UserError


def _logistic(u: float, alpha: float = 14.0, beta: float = 6.0) -> float:
    # fasterai's one-cycle curve, rescaled so that it is exactly 0 at u=0 and 1 at u=1
    sig = lambda x: 1.0 / (1.0 + math.exp(-alpha * x + beta))  # noqa: E731
    return (sig(u) - sig(0.0)) / (sig(1.0) - sig(0.0))


# name -> (share of the way at progress u, one-line description); `exp` is handled on density instead
SCHEDULES: dict[str, tuple[Callable[[float, DictConfig], float], str]] = {
    "one_shot": (lambda u, c: 1.0, "the whole target at once, at the schedule's start"),
    "iterative": (lambda u, c: math.floor(u * c.steps + 1e-9) / c.steps, "schedule.steps equal steps"),
    "agp": (lambda u, c: 1.0 - (1.0 - u) ** 3, "cubic growth (Zhu and Gupta 2017)"),
    "linear": (lambda u, c: u, "linear growth"),
    "cos": (lambda u, c: (1.0 - math.cos(math.pi * u)) / 2.0, "half-cosine growth"),
    "one_cycle": (lambda u, c: _logistic(u), "logistic (one-cycle) growth"),
    "exp": (lambda u, c: u, "density decays geometrically: each step removes the same share of survivors"),
}


def sparsity_at(schedule: DictConfig, target: float, t: float) -> float:
    """Scheduled sparsity at fraction ``t`` of the pruning stage."""
    if schedule.name not in SCHEDULES:
        raise UserError(f"schedule={schedule.name!r} is unknown; choose one of: {', '.join(SCHEDULES)}")
    initial = schedule.initial_sparsity
    if t < schedule.start:
        return initial
    if t >= schedule.end:
        return target
    u = (t - schedule.start) / (schedule.end - schedule.start)
    share = SCHEDULES[schedule.name][0](u, schedule)
    if schedule.name == "exp":
        return 1.0 - (1.0 - initial) * ((1.0 - target) / (1.0 - initial)) ** share
    return initial + (target - initial) * share


class ScheduledPruning(TrainHook):
    """Raises the sparsity along the schedule every ``schedule.frequency`` steps of the pruning stage."""

    def __init__(self, method, schedule: DictConfig, target: float, total_steps: int, step: int = 0):
        self.method, self.schedule, self.target, self.total = method, schedule, target, total_steps
        # The sparsity reached by the last update at or before `step` (masks come from the checkpoint).
        last_update = step - step % schedule.frequency
        self.current = sparsity_at(schedule, target, last_update / max(total_steps, 1)) if step else 0.0

    def start(self) -> None:
        """Apply the schedule's value at the very beginning of the stage (one_shot prunes here)."""
        self._update(0.0)

    def after_step(self, step: int) -> None:
        if step % self.schedule.frequency == 0 or step == self.total:
            self._update(step / max(self.total, 1))

    def _update(self, t: float) -> None:
        sparsity = sparsity_at(self.schedule, self.target, t)
        if sparsity > self.current:
            self.method.prune(sparsity)
            self.current = sparsity


def pruning_steps(schedule: DictConfig, target: float, total_steps: int) -> tuple[float, ...]:
    """The stage progress (step / total_steps) of every mask update that raises the sparsity: where
    ``lr_schedule=cycle`` starts the learning rate over. The first update at step 0 is not a restart."""
    points, current = [], sparsity_at(schedule, target, 0.0)
    for step in range(schedule.frequency, total_steps + schedule.frequency, schedule.frequency):
        step = min(step, total_steps)
        sparsity = sparsity_at(schedule, target, step / max(total_steps, 1))
        if sparsity > current:
            points.append(step / total_steps)
            current = sparsity
    return tuple(points)


def levels_without_training(schedule: DictConfig, target: float) -> list[float]:
    """The sparsities a pruning stage without training (``prune.epochs=0``) steps through, in order: the
    schedule read at ``schedule.steps`` evenly spaced points from its start to its end (one_shot: the
    target at once; iterative: its equal steps). Scores are recomputed before each."""
    points = [schedule.start + (schedule.end - schedule.start) * k / schedule.steps for k in range(schedule.steps + 1)]
    levels = sorted({sparsity_at(schedule, target, t) for t in points} | {target})
    return [level for level in levels if level > 0]
