"""LAMP: layer-adaptive magnitude scores for global weight pruning (Lee et al. 2021, "Layer-adaptive sparsity for
the magnitude-based pruning").

Within a layer the weights are sorted by magnitude, ascending; weight u scores ``w_u^2 / sum_{v >= u} w_v^2``, its
squared magnitude over the sum of the squares of the weights of its layer at least as large (u included, in that
order). Every layer's largest alive weight scores 1 and the scores of one layer never exceed 1, so one global
ranking over them cannot empty a layer the way raw |w| ranked globally does at extreme sparsity ("layer
collapse"); inside a layer the order is magnitude's. Hence the config's ``scope: global``: per layer, LAMP is
magnitude pruning.

Only alive weights count: a pruned weight is 0, so it adds nothing to the sums of the others, as in the authors'
code (github.com/jaeho-lee/layer-adaptive-sparsity, tools/pruners.py ``_normalize_scores``, applied to the
masked ``weight`` of torch.nn.utils.prune). Ties between equal magnitudes are broken by position (a stable sort).
"""
from __future__ import annotations

import torch

from prunekit.pruning.criteria import register_criterion
from prunekit.pruning.criteria.context import ScoringContext


def lamp_scores(weight: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """The LAMP score of every weight of one layer (pruned ones score 0), shaped like ``weight``."""
    # float64: the tail sums of a wide layer span many orders of magnitude
    square = (weight.detach().double() * alive).square().flatten()
    order = torch.argsort(square, stable=True)
    ascending = square[order]
    tail = ascending.flip(0).cumsum(0).flip(0)  # tail[i]: the sum over the i-th smallest and every larger one
    scores = torch.empty_like(square)
    # an all-zero tail (only zeros left) scores 0 rather than 0/0
    scores[order] = ascending / tail.clamp_min(torch.finfo(tail.dtype).tiny)
    return scores.view_as(weight).float()


@register_criterion("lamp", granularities=("weight",))
@torch.no_grad()
def lamp(context: ScoringContext) -> dict[str, torch.Tensor]:
    """LAMP: each weight's square over the sum of the squares of its layer's weights at least as large."""
    return {name: lamp_scores(context.masks.layers[name].weight, alive)
            for name, alive in context.masks.groups_alive("weight").items()}
