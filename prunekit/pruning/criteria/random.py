"""Random pruning: the floor every comparison needs."""
from __future__ import annotations

import torch

from prunekit import rng
from prunekit.pruning.criteria import register_criterion
from prunekit.pruning.criteria.context import ScoringContext


@register_criterion("random")
def random(context: ScoringContext) -> dict[str, torch.Tensor]:
    """Uniformly random groups (seeded; the same draw at every step, so masks nest)."""
    # The same draw at every step, from a generator seeded alike: re-drawing would prune more than asked for,
    # because the survivors of one draw are not favoured by the next.
    generator = torch.Generator().manual_seed(rng.fold(context.seed))
    return {name: torch.rand(alive.shape, generator=generator).to(alive.device)
            for name, alive in context.masks.groups_alive(context.granularity).items()}
