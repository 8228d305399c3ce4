"""Coupled channel groups: what unit pruning must remove together for the network to get smaller.

A channel is written by one or more prunable layers (its producers) and read by others (its consumers). In a
chain (MLP, CNN, VGG) a channel is one filter of one layer, read by the next; in a residual network one channel
of a residual stream is written by the stem or the first block's input and by the last convolution of every
block that adds into the stream (and by the shortcut convolutions), and every block reads it. Removing it
from some producers only would change nothing: the others still write it, so compaction has to keep it.

torch-pruning's dependency graph finds these groups (Fang et al. 2023, DepGraph). A :class:`ChannelGroup`
holds, for each of its channels, which unit of each producer writes it and which input positions of each
consumer read it (several positions where a flatten feeds a Linear layer). Unit criteria still score each
layer's units; :func:`group_scores` maps every producer's scores onto the group's channels and reduces them
(``method.group_reduction``: sum, mean or max, as Torch-Pruning's group importance does), and the masks then
keep or remove a channel in every member at once (:meth:`prunekit.pruning.masks.MaskSet.set_groups`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from prunekit.layers import eval_mode, prunable_layers

PRODUCES = {tp.prune_conv_out_channels, tp.prune_linear_out_channels}
READS = {tp.prune_conv_in_channels, tp.prune_linear_in_channels}
REDUCTIONS = ("sum", "mean", "max")


@dataclass
class ChannelGroup:
    """Channels that go together. ``name`` is its first producer in forward order (the layer a per-layer
    setting such as ``method.layer_sparsity`` names); ``producers`` maps each producing layer to the unit it
    writes for every channel of the group (a LongTensor of ``size``), ``consumers`` each reading layer to the
    input positions that read every channel (a LongTensor ``[size, positions per channel]``)."""

    name: str
    size: int
    producers: dict[str, torch.Tensor]
    consumers: dict[str, torch.Tensor]


def channel_groups(model: nn.Module, input_shape: tuple[int, ...]) -> list[ChannelGroup]:
    """The coupled groups of every prunable layer but the classifier (its units are the classes), ordered by
    their first producer's position among the prunable layers. Built from one forward pass of a zero sample in
    eval mode; the network is left as it was."""
    layers = prunable_layers(model)
    order = {name: position for position, (name, _) in enumerate(layers)}
    names = {module: name for name, module in layers}
    parameter = next(model.parameters())
    example = torch.zeros(1, *input_shape, dtype=parameter.dtype, device=parameter.device)
    # eval: the traced forward pass must not move BatchNorm's running statistics; grad: torch-pruning traces the
    # autograd graph, and a caller may be deciding masks under no_grad
    with eval_mode(model), torch.enable_grad():
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    groups = []
    for group in graph.get_all_groups(ignored_layers=[layers[-1][1]], root_module_types=(nn.Conv2d, nn.Linear)):
        producers: dict[str, torch.Tensor] = {}
        reads: dict[str, dict[int, list[int]]] = {}
        for item in group.items:
            module, handler = item.dep.target.module, item.dep.handler
            if module not in names:
                continue
            if handler in PRODUCES:
                unit = dict(zip(item.root_idxs, item.idxs))
                producers[names[module]] = torch.tensor([unit[c] for c in sorted(unit)])
            elif handler in READS:
                positions = reads.setdefault(names[module], {})
                for channel, position in zip(item.root_idxs, item.idxs):
                    positions.setdefault(int(channel), []).append(int(position))
        first = min(producers, key=order.__getitem__)
        size = len(producers[first])
        consumers = {name: torch.tensor([sorted(p[c]) for c in range(size)]) for name, p in reads.items()}
        ordered = dict(sorted(producers.items(), key=lambda kv: order[kv[0]]))
        groups.append(ChannelGroup(first, size, ordered, consumers))
    return sorted(groups, key=lambda g: order[g.name])


def group_scores(groups: list[ChannelGroup], scores: dict[str, torch.Tensor], reduction: str
                 ) -> dict[str, torch.Tensor]:
    """Per group, one score per channel: every producer's unit score at that channel, reduced with ``reduction``
    (sum, mean or max). A producer the criterion did not score is left out of the reduction."""
    out = {}
    for group in groups:
        members = [scores[name].flatten().float()[index.to(scores[name].device)]
                   for name, index in group.producers.items() if name in scores]
        stacked = torch.stack(members)
        out[group.name] = (stacked.amax(0) if reduction == "max"
                           else stacked.mean(0) if reduction == "mean" else stacked.sum(0))
    return out


def group_of(groups: list[ChannelGroup]) -> dict[str, ChannelGroup]:
    """Each producing layer's group (a layer writes the channels of exactly one group)."""
    return {layer: group for group in groups for layer in group.producers}
