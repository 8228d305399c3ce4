"""Random pruning: the floor every comparison needs."""
from __future__ import annotations

import torch

from prunekit import rng
from prunekit.pruning.methods import register
from prunekit.pruning.methods.base import PruningMethod


@register
class Random(PruningMethod):
    name = "random"
    description = "uniformly random groups (seeded; the same draw at every step, so masks nest)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One draw for the whole run: re-drawing at each schedule step would prune more than asked
        # for, because survivors of one draw are not favoured by the next.
        generator = torch.Generator().manual_seed(rng.fold(self.seed))
        self._scores = {
            name: torch.rand(alive.shape, generator=generator).to(alive.device)
            for name, alive in self.masks.groups_alive(self.cfg.granularity).items()
        }

    def scores(self) -> dict[str, torch.Tensor]:
        return self._scores
