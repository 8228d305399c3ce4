"""Magnitude pruning: small weights (or units with a small L1 norm) matter least."""
from __future__ import annotations

import torch

from prunekit.pruning.criteria import register_criterion
from prunekit.pruning.criteria.context import ScoringContext


@register_criterion("magnitude")
@torch.no_grad()
def magnitude(context: ScoringContext) -> dict[str, torch.Tensor]:
    """|w| per weight, L1 norm per unit or input feature; global or per-layer threshold."""
    out = {}
    for name in context.masks.groups_alive(context.granularity):
        weight = context.masks.layers[name].weight.abs()
        if context.granularity == "weight":
            out[name] = weight
        elif context.granularity == "unit":
            out[name] = weight.flatten(1).sum(1)
        else:  # input: the L1 norm of everything one input feature (or channel) feeds
            out[name] = weight.transpose(0, 1).flatten(1).sum(1)
    return out
