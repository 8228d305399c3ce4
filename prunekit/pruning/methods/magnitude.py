"""Magnitude pruning: small weights (or units with a small L1 norm) matter least."""
from __future__ import annotations

import torch

from prunekit.pruning.methods import register
from prunekit.pruning.methods.base import PruningMethod


@register
class Magnitude(PruningMethod):
    name = "magnitude"
    description = "|w| per weight, L1 norm per unit or input feature; global or per-layer threshold"

    @torch.no_grad()
    def scores(self) -> dict[str, torch.Tensor]:
        granularity = self.cfg.granularity
        alive = self.masks.groups_alive(granularity)
        out = {}
        for name in alive:
            weight = self.masks.layers[name].weight.abs()
            if granularity == "weight":
                out[name] = weight
            elif granularity == "unit":
                out[name] = weight.flatten(1).sum(1)
            else:  # input: the L1 norm of everything one input feature (or channel) feeds
                out[name] = weight.transpose(0, 1).flatten(1).sum(1)
        return out
