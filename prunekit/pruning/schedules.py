"""Sparsity schedules: how the target grows over the pruning stage.

Each schedule (a curve registered with :func:`register_schedule`) maps progress ``u`` in [0, 1] (between
``start`` and ``end``, as fractions of the pruning stage) to the share of the way from the initial sparsity to
the target. Every one is monotone, gives exactly the initial sparsity before ``start`` and exactly the target
from ``end`` on. A schedule of rounds (``rounds=True``: iterative magnitude pruning) gives the sparsity after
each round instead, and the pruning stage trains ``prune.epochs`` between two rounds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from prunekit.config import FRACTION, ScheduleConfig, ranged
from prunekit.engine import TrainHook
from prunekit.registry import Registry

Curve = Callable[[float, DictConfig], float]
Rounds = Callable[[DictConfig, float], list[float]]  # (schedule config, target) -> the sparsity after each round

SCHEDULES: Registry[Curve] = Registry("schedule", "schedule", group="schedule", base=ScheduleConfig)


def register_schedule(name: str, *, config: type | None = None, description: str | None = None,
                      on_density: bool = False, stepped: bool = False,
                      rounds: bool = False) -> Callable[[Curve | Rounds], Curve | Rounds]:
    """Decorator: make the curve available as ``schedule=<name>``. A curve maps progress ``u`` in [0, 1] and
    the schedule config to the share of the way from the initial sparsity to the target; ``on_density``
    curves move the density geometrically instead; ``stepped`` schedules prune in a few distinct steps
    (a learning-rate cycle, ``prune.lr_schedule=cycle``, can follow them). With ``rounds``, the function maps
    the schedule config and the target to the sparsity after each round (:data:`Rounds`)."""
    return SCHEDULES.register(name, config=config, description=description, on_density=on_density,
                              stepped=stepped or rounds, rounds=rounds)


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


@dataclass
class ImpConfig(ScheduleConfig):
    # the fraction of the remaining weights each round removes (Frankle and Carbin 2019 prune 20% of a fully
    # connected layer's weights per round)
    rate: float = ranged(0.2, low=0.0, high=1.0, low_open=True, high_open=True)


@register_schedule("imp", config=ImpConfig, rounds=True)
def imp(cfg: DictConfig, target: float) -> list[float]:
    """Iterative magnitude pruning's rounds: each removes schedule.rate of what remains, the last ends at the target."""
    levels, density = [], 1.0 - cfg.initial_sparsity
    while 1.0 - density * (1.0 - cfg.rate) < target - 1e-9:
        density *= 1.0 - cfg.rate
        levels.append(1.0 - density)
    return [*levels, target]


def rounds(schedule: DictConfig, target: float) -> list[float] | None:
    """The sparsity after each round of a schedule of rounds, None for a curve."""
    entry = SCHEDULES.get(schedule.name)
    return entry.target(schedule, target) if entry.extra["rounds"] else None


def stage_epochs(schedule: DictConfig, target: float, epochs: int) -> int:
    """The pruning stage's length: ``prune.epochs``, or that many between every two rounds of a schedule of
    rounds (the first round prunes the dense network, the last one ends the stage)."""
    levels = rounds(schedule, target)
    return epochs if levels is None else epochs * (len(levels) - 1)


def plain(schedule: DictConfig) -> SimpleNamespace:
    """The schedule config as plain attributes: read at every optimiser step, where a DictConfig's lookups would
    cost more than the step of a small network."""
    return SimpleNamespace(**OmegaConf.to_container(schedule, resolve=True))


def sparsity_at(schedule: DictConfig | SimpleNamespace, target: float, t: float) -> float:
    """Scheduled sparsity at fraction ``t`` of the pruning stage."""
    entry = SCHEDULES.get(schedule.name)
    initial = schedule.initial_sparsity
    if t < schedule.start:
        return initial
    if t >= schedule.end:
        return target
    u = (t - schedule.start) / (schedule.end - schedule.start)
    if entry.extra["rounds"]:  # round k at u = k / (rounds - 1)
        levels = entry.target(schedule, target)
        return levels[min(math.floor(u * (len(levels) - 1) + 1e-9), len(levels) - 1)]
    share = entry.target(u, schedule)
    if entry.extra["on_density"]:
        return 1.0 - (1.0 - initial) * ((1.0 - target) / (1.0 - initial)) ** share
    return initial + (target - initial) * share


class ScheduledPruning(TrainHook):
    """Raises the sparsity along the schedule every ``schedule.frequency`` steps of the pruning stage, calling
    ``after_prune`` (rewinding, prunekit/stages/rewind.py) after each step that pruned."""

    def __init__(self, method, schedule: DictConfig, target: float, total_steps: int, step: int = 0,
                 after_prune: Callable[[], None] | None = None):
        self.method, self.schedule, self.target, self.total = method, plain(schedule), target, total_steps
        self.after_prune = after_prune
        # The sparsity reached by the last update at or before `step` (masks come from the checkpoint).
        last_update = step - step % self.schedule.frequency
        self.current = sparsity_at(self.schedule, target, last_update / max(total_steps, 1)) if step else 0.0

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
            if self.after_prune is not None:
                self.after_prune()


def pruning_steps(schedule: DictConfig, target: float, total_steps: int) -> tuple[float, ...]:
    """The stage progress (step / total_steps) of every mask update that raises the sparsity: where
    ``lr_schedule=cycle`` starts the learning rate over. The first update at step 0 is not a restart."""
    schedule = plain(schedule)
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
    target at once; iterative: its equal steps; a schedule of rounds: its rounds). Scores are recomputed before
    each."""
    levels = rounds(schedule, target)
    if levels is not None:
        return levels
    points = [schedule.start + (schedule.end - schedule.start) * k / schedule.steps for k in range(schedule.steps + 1)]
    levels = sorted({sparsity_at(schedule, target, t) for t in points} | {target})
    return [level for level in levels if level > 0]
