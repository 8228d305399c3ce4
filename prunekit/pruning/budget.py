"""Pruning to a cost: the compact network keeps at most a fraction of the dense FLOPs or parameters.

A channel costs more in a wide, high-resolution layer than in a narrow late one, and removing it also removes
the inputs of the layers that read it: removing half the channels of two consecutive layers removes about three
quarters of the second one's weights. So a count of units (``method.sparsity``) is neither the FLOPs nor the
parameter fraction, and papers compare methods at equal cost (2x, 4x fewer FLOPs).

:class:`CostModel` gives the cost of the network with some channels (coupled groups) or input features removed,
exactly as the measured figures count it (prunekit/metrics.py): a prunable layer with ``o`` of its ``O`` outputs
and ``i`` of its ``I`` input positions alive costs ``o * i / (O * I)`` of its dense FLOPs (and weights), its bias
and BatchNorm entries ``o`` each; everything else is counted in full. :func:`keep_to_budget` removes candidates
in rank order, one block at a time (a channel, or ``method.round_to`` channels), and stops at the first prefix
whose cost is within the budget: the previous prefix was above it, so the result lands within one block.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prunekit.errors import UserError
from prunekit.metrics import flops_per_layer
from prunekit.pruning.masks import MaskSet

KINDS = ("flops", "params")


@dataclass
class Bucket:
    """What removing one candidate of a bucket (a coupled group's channel, or an input feature) takes away:
    one output of each layer in ``producers``, ``consumers[layer]`` input positions of each reading layer."""

    producers: tuple[str, ...]
    consumers: dict[str, int]


class CostModel:
    """FLOPs (one sample, multiply-add = 2, prunable layers) or parameters (all) of the network built on ``masks``
    when every bucket loses some candidates; ``dense`` is the cost of the unpruned network."""

    def __init__(self, masks: MaskSet, kind: str):
        self.kind = kind
        flops = flops_per_layer(masks.model, masks.input_shape) if kind == "flops" else None
        self.pair: dict[str, int] = {}  # cost of one (output, input position) pair
        self.single: dict[str, int] = {}  # cost of one output alone (bias, BatchNorm entries)
        self.full: dict[str, tuple[int, int]] = {}
        for name, layer in masks.layers.items():
            if isinstance(layer, nn.Conv2d) and layer.groups != 1:
                raise UserError(f"a FLOPs or parameter budget counts dense convolutions; {name} is grouped "
                                f"(groups={layer.groups})")
            outs, ins = layer.weight.shape[:2]
            self.full[name] = (outs, ins)
            if kind == "flops":
                self.pair[name], self.single[name] = flops[name] // (outs * ins), 0
            else:
                norm = masks.batchnorms.get(name)
                owned = [layer.bias] + ([norm.weight, norm.bias] if norm is not None else [])
                self.pair[name] = layer.weight[0, 0].numel()
                self.single[name] = sum(1 for t in owned if t is not None)
        total = sum(p.numel() for p in masks.model.parameters())
        self.fixed = 0 if kind == "flops" else total - self.cost_of(self.full)
        self.dense = self.cost_of(self.full) + self.fixed

    @staticmethod
    def sizes(masks: MaskSet) -> dict[str, tuple[int, int]]:
        """Each prunable layer's alive outputs and alive input positions under the masks as they are now."""
        sizes = {}
        for name, layer in masks.layers.items():
            mask = layer.weight_mask
            reads = mask.any(0)  # [inputs, kernel...]: reduced over the outputs first, no transposed copy
            sizes[name] = (int(mask.flatten(1).any(1).sum()), int(reads.reshape(len(reads), -1).any(1).sum()))
        return sizes

    def fraction(self, masks: MaskSet) -> float:
        """The fraction of the dense cost the network keeps under ``masks`` as they are now."""
        return self.cost(self.sizes(masks), {}, {}) / self.dense

    def cost_of(self, sizes: dict[str, tuple[int, int]]) -> int:
        """The prunable layers' cost at ``sizes`` (layer -> alive outputs, alive input positions)."""
        return sum(self.pair[n] * o * i + self.single[n] * o for n, (o, i) in sizes.items())

    def cost(self, alive: dict[str, tuple[int, int]], buckets: dict[str, Bucket], removed: dict[str, int]) -> int:
        """The cost once each bucket has lost ``removed[bucket]`` candidates more than the layer sizes ``alive``."""
        sizes = {n: list(a) for n, a in alive.items()}
        for key, count in removed.items():
            for name in buckets[key].producers:
                sizes[name][0] -= count
            for name, positions in buckets[key].consumers.items():
                sizes[name][1] -= count * positions
        return self.cost_of({n: (o, i) for n, (o, i) in sizes.items()}) + self.fixed


def blocks(scores: dict[str, torch.Tensor], alive: dict[str, torch.Tensor], floors: dict[str, int],
           scope: str, round_to: int) -> list[tuple[str, torch.Tensor]]:
    """Every candidate block in removal order: per bucket, its alive candidates by ascending score, cut into
    blocks that leave a multiple of ``round_to`` alive and never go below the bucket's floor (its best
    ``floors[bucket]`` stay); ``global`` scope orders blocks by mean score, ``layer`` by the fraction of the bucket
    removed once the block goes (so every bucket loses the same share), then by score."""
    ranked = []
    for position, (key, mask) in enumerate(alive.items()):
        flat = mask.flatten()
        candidates = flat.nonzero().flatten()
        order = candidates[torch.argsort(scores[key].flatten().to(flat.device)[candidates].float(), stable=True)]
        count, size, dead = len(order), flat.numel(), flat.numel() - len(order)
        taken = 0
        while True:
            step = (count - taken) % round_to or round_to
            if count - taken - step < floors[key]:
                break
            block = order[taken:taken + step]
            taken += step
            mean = float(scores[key].flatten().to(flat.device)[block].float().mean())
            share = (dead + taken) / size
            ranked.append(((mean,) if scope == "global" else (share, mean), position, key, block))
    ranked.sort(key=lambda entry: (entry[0], entry[1]))
    return [(key, block) for _, _, key, block in ranked]


def keep_to_budget(model: CostModel, masks: MaskSet, buckets: dict[str, Bucket], alive: dict[str, torch.Tensor],
                   order: list[tuple[str, torch.Tensor]], kept_fraction: float) -> dict[str, torch.Tensor]:
    """The alive candidates left once the shortest prefix of ``order`` whose removal brings the cost to at most
    ``kept_fraction`` of the dense cost is removed (all of ``order`` when none does)."""
    limit, sizes = kept_fraction * model.dense, model.sizes(masks)

    def removed(k: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for key, block in order[:k]:
            counts[key] = counts.get(key, 0) + len(block)
        return counts

    low, high = 0, len(order)
    while low < high:
        middle = (low + high) // 2
        if model.cost(sizes, buckets, removed(middle)) <= limit:
            high = middle
        else:
            low = middle + 1
    keep = {key: mask.clone() for key, mask in alive.items()}
    for key, block in order[:low]:
        keep[key].view(-1)[block] = False
    return keep
