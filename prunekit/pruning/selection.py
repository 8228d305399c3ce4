"""Turning importance scores into a keep decision at a requested sparsity."""
from __future__ import annotations

import torch


def _top_k(flat_scores: torch.Tensor, flat_alive: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Keep the n_keep best-scoring alive entries; pruned ones can never come back."""
    ranked = torch.where(flat_alive, torch.nan_to_num(flat_scores.float(), nan=-torch.inf), -torch.inf)
    n_keep = min(n_keep, int(flat_alive.sum()))
    keep = torch.zeros_like(flat_alive)
    if n_keep > 0:
        keep[torch.topk(ranked, n_keep, sorted=False).indices] = True
    return keep


def select_groups(
    scores: dict[str, torch.Tensor],
    alive: dict[str, torch.Tensor],
    sparsity: float,
    scope: str,
) -> dict[str, torch.Tensor]:
    """Keep ``round((1 - sparsity) * n)`` groups, ranked by score (higher is kept).

    ``scope="global"`` ranks all layers together, so the count is exact over the whole model;
    ``scope="layer"`` keeps the same fraction of every layer.
    """
    names = list(alive)
    if scope == "layer":
        return {
            n: _top_k(scores[n].flatten(), alive[n].flatten(), round((1 - sparsity) * alive[n].numel()))
            .view_as(alive[n])
            for n in names
        }
    flat_scores = torch.cat([scores[n].flatten().to(alive[names[0]].device) for n in names])
    flat_alive = torch.cat([alive[n].flatten() for n in names])
    keep = _top_k(flat_scores, flat_alive, round((1 - sparsity) * flat_alive.numel()))
    sizes = [alive[n].numel() for n in names]
    return {n: k.view_as(alive[n]) for n, k in zip(names, keep.split(sizes))}
