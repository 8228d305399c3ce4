"""Each coupled group pruned alone: how much validation accuracy the dense network loses, and what it still costs.

For every channel group (prunekit/pruning/coupling.py; named by its first producer, the name
``method.layer_sparsity`` reads) and every ratio, the dense network is restored and that group alone is pruned
to the ratio by the criterion's scores of the dense network, through the same allocation a run with
``method.layer_sparsity={group: ratio}`` uses (prunekit/pruning/allocation.py): the group keeps
round((1 - ratio) * channels) of its channels, at least its ``method.min_keep`` floor (and a multiple of
``method.round_to``). Nothing is trained: the curve says how fragile each group is, as Distiller's ``--sense``
and fasterai's sensitivity analyser measure it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import OmegaConf

from prunekit.pruning.allocation import Allocation
from prunekit.pruning.budget import CostModel
from prunekit.sensitivity.source import DenseRun

DEFAULT_RATIOS = tuple(round(0.1 * step, 1) for step in range(1, 10))


@dataclass
class Point:
    """One group pruned alone to ``ratio``: the channels it keeps, the validation accuracy, and the fractions of
    the dense FLOPs and parameters the whole network keeps."""

    group: str
    producers: tuple[str, ...]
    channels: int
    ratio: float
    kept: int
    val_accuracy: float
    flops_fraction: float
    params_fraction: float


@dataclass
class Sensitivity:
    """Every group at every ratio, and the dense network's validation accuracy they are measured against."""

    dense_accuracy: float
    ratios: tuple[float, ...]
    points: list[Point]

    def groups(self) -> dict[str, list[Point]]:
        """The points of each group, groups in forward order, ratios ascending."""
        by_group: dict[str, list[Point]] = {}
        for point in self.points:
            by_group.setdefault(point.group, []).append(point)
        return by_group

    def drop(self, point: Point) -> float:
        """How much validation accuracy pruning the group to the point's ratio costs (negative: it gained)."""
        return self.dense_accuracy - point.val_accuracy


class Costs:
    """The fractions of the dense FLOPs and parameters the network on ``masks`` keeps (prunekit/pruning/budget.py,
    counted as summary.json's flops_effective and params_effective count them)."""

    def __init__(self, run: DenseRun):
        self.masks = run.masks
        self.models = {kind: CostModel(run.masks, kind) for kind in ("flops", "params")}

    def fractions(self) -> dict[str, float]:
        """{"flops": fraction, "params": fraction} of the network as its masks are now."""
        return {kind: model.fraction(self.masks) for kind, model in self.models.items()}


def prune_groups(run: DenseRun, scores: dict[str, torch.Tensor], ratios: dict[str, float]) -> None:
    """Restore the dense network, then prune each group of ``ratios`` to its ratio by ``scores``, as the last
    step of a run with ``method.layer_sparsity=ratios`` does."""
    run.restore()
    level = max(ratios.values(), default=0.0)
    if level > 0:
        cfg = OmegaConf.merge(run.method, {"layer_sparsity": ratios})
        Allocation(cfg, run.masks).prune("unit", scores, level)


def analyse(run: DenseRun, scores: dict[str, torch.Tensor], ratios: tuple[float, ...] = DEFAULT_RATIOS,
            progress: Callable[[str], None] = lambda line: None) -> Sensitivity:
    """Prune every group of ``run`` alone at each of ``ratios`` by ``scores`` (the criterion's, of the dense
    network: every measurement starts from the same ranking) and measure; ``progress`` gets a line per group."""
    run.restore()
    dense = run.val_accuracy()
    costs, points = Costs(run), []
    for group in run.masks.channel_groups():
        for ratio in ratios:
            prune_groups(run, scores, {group.name: ratio})
            kept, fractions = int(run.masks.channels_alive()[group.name].sum()), costs.fractions()
            points.append(Point(group.name, tuple(group.producers), group.size, ratio, kept, run.val_accuracy(),
                                fractions["flops"], fractions["params"]))
        worst = min(p.val_accuracy for p in points[-len(ratios):])
        progress(f"{group.name} ({group.size} channels): validation accuracy {worst:.4f} at worst "
                 f"(dense {dense:.4f})")
    run.restore()
    return Sensitivity(dense, tuple(ratios), points)
