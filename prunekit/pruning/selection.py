"""Turning importance scores into a keep decision at a requested sparsity, with a floor per layer.

The floor (``method.min_keep``) is the layer-collapse guard: ranking raw scores across layers of
different fan-in can otherwise remove a whole layer (every L1 norm of a wide first layer is small), and
a network with an empty layer has no path from input to output. A floor per layer keeps a layer from
emptying; at weight granularity it does not by itself guarantee a path (the kept weights of consecutive
layers need not connect), which :func:`prunekit.metrics.collapse` reports.
"""
from __future__ import annotations

import math

import torch

from prunekit.errors import UserError, warn


def resolved_scope(scope: str, granularity: str) -> str:
    """``method.scope`` as the ranking uses it: ``auto`` is ``global`` for weights and ``layer`` for units and
    input features. Raw unit scores (a filter's L1 norm, ...) grow with the layer's fan-in, so one global
    ranking of them empties whole layers (VGG16-small kept 1 of its first convolution's 64 filters at 50%, the
    default MLP fell to 33% accuracy at 90% of its units); the field's filter-pruning baselines (Li et al.
    2017, Torch-Pruning's default) remove the same fraction of every layer instead."""
    if scope != "auto":
        return scope
    return "global" if granularity == "weight" else "layer"


FLOOR_SLACK = 1.1  # floors may keep up to 10% more groups than the target leaves before a run is refused


def check_floors(alive: dict[str, torch.Tensor], sparsity: float, min_keep: float, target: str) -> None:
    """Refuse (UserError) a target that the layers' floors make unreachable: the floors alone keep more than
    FLOOR_SLACK times the groups ``sparsity`` leaves; warn when they only bend it. ``target`` names the option."""
    total = sum(a.numel() for a in alive.values())
    wanted = round((1 - sparsity) * total)
    floors = sum(min(layer_floor(min_keep, a.numel()), a.numel()) for a in alive.values())
    if floors <= wanted:
        return
    message = (f"method.min_keep={min_keep:g} keeps at least {floors} of the {total} groups of {len(alive)} layers, "
               f"but {target} leaves {wanted}")
    if floors > FLOOR_SLACK * max(wanted, 1):
        raise UserError(f"{message}: lower method.min_keep or the sparsity")
    warn(f"{message}; the floors win (sparsity {1 - floors / total:.4f})")


def top_k(scores: torch.Tensor, alive: torch.Tensor, n_keep: int) -> torch.Tensor:
    """A mask keeping the ``n_keep`` best-scoring alive entries of flat ``scores`` (fewer when fewer are alive);
    pruned ones can never come back."""
    keep = torch.zeros_like(alive)
    candidates = alive.nonzero().flatten()
    n_keep = min(n_keep, candidates.numel())
    if n_keep > 0:
        # NaN scores rank last; ranking only the alive entries keeps a dead one from ever being chosen.
        ranked = torch.nan_to_num(scores.to(alive.device).float()[candidates], nan=-torch.inf)
        keep[candidates[torch.topk(ranked, n_keep, sorted=False).indices]] = True
    return keep


def layer_floor(min_keep: float, groups: int) -> int:
    """The fewest of a layer's ``groups`` to keep: ``min_keep`` itself when >= 1 (rounded up), a fraction
    of all its groups (pruned ones included, rounded up) when between 0 and 1, none when 0."""
    return math.ceil(min_keep) if min_keep >= 1 else math.ceil(min_keep * groups)


def _floors(alive: dict[str, torch.Tensor], min_keep: float) -> dict[str, int]:
    """Each layer's floor, never above the groups it still has alive (pruned groups stay pruned)."""
    return {n: min(layer_floor(min_keep, a.numel()), int(a.sum())) for n, a in alive.items()}


def select_top(
    scores: dict[str, torch.Tensor],
    alive: dict[str, torch.Tensor],
    n_keep: int,
    min_keep: float,
) -> dict[str, torch.Tensor]:
    """Keep exactly ``n_keep`` alive groups over all layers: first each layer's floor (see
    :func:`layer_floor`) from its best-scoring alive groups, then the best-scoring of the rest, ranked
    across layers (higher is kept).

    If the floors alone exceed ``n_keep``, the floors are kept, so more than ``n_keep`` survive; that is
    the only case where the count is not exact (besides ``n_keep`` above the groups still alive).
    """
    names = list(alive)
    if not names:  # e.g. unit granularity on a network whose only layer is the classifier
        return {}
    floors = _floors(alive, min_keep)
    flat_scores = torch.cat([scores[n].flatten().to(alive[names[0]].device) for n in names])
    flat_alive = torch.cat([alive[n].flatten() for n in names])
    reserved = torch.cat([top_k(scores[n].flatten(), alive[n].flatten(), floors[n]) for n in names])
    keep = reserved | top_k(flat_scores, flat_alive & ~reserved, n_keep - sum(floors.values()))
    sizes = [alive[n].numel() for n in names]
    return {n: k.view_as(alive[n]) for n, k in zip(names, keep.split(sizes))}


def _take_back(slack: list[int], excess: int) -> list[int]:
    """How many groups to take from each layer so that ``excess`` are freed, largest slack first.

    The slacks are levelled down from the top: the lowest level ``L`` whose cuts ``max(s - L, 0)`` free
    at most ``excess``, then one more from each of the first layers still at ``L`` for the remainder
    (fewer than them, since level ``L - 1`` would free too many). Needs ``sum(slack) >= excess``.
    """
    low, high = 0, max(slack, default=0)
    while low < high:
        level = (low + high) // 2
        if sum(max(s - level, 0) for s in slack) <= excess:
            high = level
        else:
            low = level + 1
    cuts = [max(s - low, 0) for s in slack]
    remainder = excess - sum(cuts)
    for i, s in enumerate(slack):
        if remainder and s >= low:
            cuts[i] += 1
            remainder -= 1
    return cuts


def _layer_quotas(alive: dict[str, torch.Tensor], sparsity: float, min_keep: float) -> dict[str, int]:
    """``round((1 - sparsity) * n_l)`` per layer (at most its alive groups), raised to the floors; the
    groups added are taken back from the layers with the most slack above their floors, so the total
    is the unguarded total unless the floors alone exceed it (then every layer keeps its floor)."""
    floors = _floors(alive, min_keep)
    quotas = {n: min(round((1 - sparsity) * a.numel()), int(a.sum())) for n, a in alive.items()}
    raised = {n: max(q, floors[n]) for n, q in quotas.items()}
    excess = sum(raised.values()) - sum(quotas.values())
    slack = [raised[n] - floors[n] for n in alive]
    if excess >= sum(slack):
        return floors
    return {n: q - cut for (n, q), cut in zip(raised.items(), _take_back(slack, excess))}


def select_groups(
    scores: dict[str, torch.Tensor],
    alive: dict[str, torch.Tensor],
    sparsity: float,
    scope: str,
    min_keep: float,
) -> dict[str, torch.Tensor]:
    """Keep ``round((1 - sparsity) * n)`` groups, ranked by score (higher is kept), and at least each
    layer's floor (``min_keep``, see :func:`layer_floor`) of the groups it still has alive.

    ``scope="global"`` ranks all layers together, so the count is exact over the whole model (see
    :func:`select_top`); ``scope="layer"`` keeps the same fraction of every layer, except that a layer
    below its floor is raised to it and the difference is taken from the layers with the most slack
    above theirs, keeping the total. Only when the floors alone exceed the total do more groups survive.
    """
    if scope == "layer":
        quotas = _layer_quotas(alive, sparsity, min_keep)
        return {n: top_k(scores[n].flatten(), a.flatten(), quotas[n]).view_as(a) for n, a in alive.items()}
    return select_top(scores, alive, round((1 - sparsity) * sum(a.numel() for a in alive.values())), min_keep)


def normalised(scores: dict[str, torch.Tensor], how: str) -> dict[str, torch.Tensor]:
    """Each layer's scores divided by their L2 norm (``l2``) or their sum (``sum``), or as they are (``none``):
    criteria whose scale differs between layers are ranked globally on a common footing this way."""
    if how == "none":
        return scores
    norm = (lambda s: s.norm()) if how == "l2" else (lambda s: s.sum())
    # A layer whose scores are all zero stays all zero rather than turning into NaNs.
    return {name: s / norm(s).clamp_min(torch.finfo(s.dtype).tiny) for name, s in scores.items()}
