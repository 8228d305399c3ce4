"""Sparsity schedules: how the target grows over the pruning stage.

Each schedule (a curve registered with :func:`register_schedule`) maps progress ``u`` in [0, 1] (between
``start`` and ``end``, as fractions of the pruning stage) to the share of the way from the initial sparsity to the target. Every one is monotone, gives
exactly the initial sparsity before ``start`` and exactly the target from ``end`` on.
"""
from __future__ import annotations

import math
from typing import Callable

from omegaconf import DictConfig

from prunekit.config import ScheduleConfig
from prunekit.engine import TrainHook
from prunekit.registry import Registry

Curve = Callable[[float, DictConfig], float]

SCHEDULES: Registry[Curve] = Registry("schedule", "schedule", group="schedule", base=ScheduleConfig)


def register_schedule(name: str, *, config: type | None = None, description: str | None = None,
                      on_density: bool = False, stepped: bool = False) -> Callable[[Curve], Curve]:
    """Decorator: make the curve available as ``schedule=<name>``. A curve maps progress ``u`` in [0, 1] and
    the schedule config to the share of the way from the initial sparsity to the target; ``on_density``
    curves move the density geometrically instead; ``stepped`` schedules prune in a few distinct steps
    (a learning-rate cycle, ``prune.lr_schedule=cycle``, can follow them)."""
    return SCHEDULES.register(name, config=config, description=description, on_density=on_density,
                              stepped=stepped)


@register_schedule("one_shot", stepped=True)
def one_shot(u: float, cfg: DictConfig) -> float:
    """The whole target at once, at the schedule's start."""
    return 1.0


@register_schedule("iterative", stepped=True)
def iterative(u: float, cfg: DictConfig) -> float:
    """schedule.steps equal steps."""
    return math.floor(u * cfg.steps + 1e-9) / cfg.steps


@register_schedule("agp")
def agp(u: float, cfg: DictConfig) -> float:
    """Automated gradual pruning: cubic growth (Zhu and Gupta 2017)."""
    return 1.0 - (1.0 - u) ** 3


@register_schedule("linear")
def linear(u: float, cfg: DictConfig) -> float:
    """Linear growth."""
    return u


@register_schedule("cos")
def cos(u: float, cfg: DictConfig) -> float:
    """Half-cosine growth."""
    return (1.0 - math.cos(math.pi * u)) / 2.0


@register_schedule("one_cycle")
def one_cycle(u: float, cfg: DictConfig, alpha: float = 14.0, beta: float = 6.0) -> float:
    """Logistic (one-cycle) growth."""
    # fasterai's one-cycle curve, rescaled so that it is exactly 0 at u=0 and 1 at u=1
    sig = lambda x: 1.0 / (1.0 + math.exp(-alpha * x + beta))  # noqa: E731
    return (sig(u) - sig(0.0)) / (sig(1.0) - sig(0.0))


@register_schedule("exp", on_density=True)
def exp(u: float, cfg: DictConfig) -> float:
    """Density decays geometrically: each step removes the same share of survivors."""
    return u


def sparsity_at(schedule: DictConfig, target: float, t: float) -> float:
    """Scheduled sparsity at fraction ``t`` of the pruning stage."""
    entry = SCHEDULES.get(schedule.name)
    initial = schedule.initial_sparsity
    if t < schedule.start:
        return initial
    if t >= schedule.end:
        return target
    u = (t - schedule.start) / (schedule.end - schedule.start)
    share = entry.target(u, schedule)
    if entry.extra["on_density"]:
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
