"""From sensitivity curves to per-group ratios that meet a FLOPs or parameter budget.

The rule: find the smallest accuracy drop ``d`` such that, when every group gets the largest measured ratio
whose drop from the dense validation accuracy is at most ``d`` (ratio 0 when none is), the network pruned to
these ratios keeps at most the budget's fraction of the dense FLOPs (``--target-flops``) or parameters
(``--target-params``). Every group gives up at most the same accuracy, as measured alone: a fragile group keeps
its channels and a robust one loses many. The cost is counted on the network pruned exactly as
``method.layer_sparsity`` prunes it (each group keeps round((1 - ratio) * channels), at least its
``method.min_keep`` floor, a multiple of ``method.round_to``), so the run fed these ratios lands on the fraction
reported here. A larger ``d`` never gives a group a smaller ratio, so the cost falls as ``d`` grows and a
bisection over the measured drops finds the smallest one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from prunekit.errors import UserError
from prunekit.sensitivity.analysis import Costs, Sensitivity, prune_groups
from prunekit.sensitivity.source import DenseRun

KINDS = {"flops": "FLOPs", "params": "parameters"}


@dataclass
class Allotment:
    """Ratios per group meeting a budget: ``kind`` (flops or params) at most ``target`` of the dense network's;
    ``drop`` is the accuracy drop each group was allowed alone, ``kept`` the channels each group keeps and
    ``fractions`` what the network keeps of the dense FLOPs and parameters."""

    ratios: dict[str, float]
    kept: dict[str, int]
    drop: float
    kind: str
    target: float
    fractions: dict[str, float]


def ratios_at(sensitivity: Sensitivity, drop: float) -> dict[str, float]:
    """Per group, the largest measured ratio whose accuracy drop is at most ``drop`` (0 when none is)."""
    return {group: max([p.ratio for p in points if sensitivity.drop(p) <= drop], default=0.0)
            for group, points in sensitivity.groups().items()}


def allocate(run: DenseRun, scores: dict[str, torch.Tensor], sensitivity: Sensitivity, kind: str,
             target: float) -> Allotment:
    """The ratios the module's rule gives for keeping at most ``target`` of the dense ``kind`` (flops or
    params); a budget that even the largest ratios everywhere miss is a UserError saying what they reach."""
    costs = Costs(run)

    def fractions(drop: float) -> dict[str, float]:
        prune_groups(run, scores, ratios_at(sensitivity, drop))
        return costs.fractions()

    drops = sorted({0.0, *(sensitivity.drop(p) for p in sensitivity.points)})
    reached = fractions(drops[-1])[kind]
    if reached > target:
        run.restore()
        largest = max(sensitivity.ratios)
        raise UserError(f"--target-{kind}={target:g} cannot be met from these curves: every group at its largest "
                        f"ratio ({largest:g}) keeps {reached:.4f} of the dense {KINDS[kind]}; add larger --ratios "
                        "or raise the target (no layer_sparsity.yaml written)")
    low, high = 0, len(drops) - 1  # drops[high] meets the budget; find the first that does
    while low < high:
        middle = (low + high) // 2
        if fractions(drops[middle])[kind] <= target:
            high = middle
        else:
            low = middle + 1
    achieved = fractions(drops[low])
    kept = {group: int(alive.sum()) for group, alive in run.masks.channels_alive().items()}
    run.restore()
    return Allotment(ratios_at(sensitivity, drops[low]), kept, drops[low], kind, target, achieved)
