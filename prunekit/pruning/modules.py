"""crespr's modules: which module every weight of a network belongs to (DESIGN.md 2.4).

Every hidden layer's units (neurons, or filters of a convolution) are cut into K contiguous, nearly equal
modules. A weight joining module c of one layer to module c of the next lies inside module c; one joining
two different modules crosses them. Two layers read everything: the classifier reads every module (a
weight into a class lies in the module it comes from), and a CNN's first convolution reads all image
channels (its weights lie in the module of the filter they feed). An MLP's first layer reads the input
feature clusters (:mod:`prunekit.pruning.clusters`): cluster c feeds module c.

Because modules are contiguous by unit index, a convolution's input channel c belongs to the same module
as the output channel c of the layer feeding it, whatever that layer is: residual additions and the
1x1 shortcut convolutions of a ResNet stay inside their modules too.
"""
from __future__ import annotations

import torch
from torch import nn

from prunekit.pruning.selection import layer_floor, top_k

CROSS = -1  # the module id of a weight that joins two different modules


def unit_modules(width: int, k: int) -> torch.Tensor:
    """The module (0..k-1) of each of ``width`` units: k contiguous, nearly equal runs."""
    return torch.arange(width) * k // width


def _inputs(layer: nn.Module, previous: torch.Tensor, k: int) -> torch.Tensor:
    """The module of each input column of ``layer`` given the modules of the units of the layer before it."""
    if isinstance(layer, nn.Conv2d):
        return unit_modules(layer.in_channels, k)
    # A Linear after a convolution reads its channels flattened (channel-major): each channel's positions in a row.
    return previous.repeat_interleave(layer.in_features // previous.numel())


def weight_modules(layers: dict[str, nn.Module], k: int, features: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """For every prunable layer (forward order, the classifier last), a tensor shaped like its weight holding
    the module of each weight, or :data:`CROSS`. ``features`` are the input clusters of an MLP's first layer
    (None for a CNN, whose first convolution reads all channels)."""
    names, out = list(layers), {}
    previous = None
    for index, name in enumerate(names):
        layer = layers[name]
        if index == 0:
            inputs = None if isinstance(layer, nn.Conv2d) else features.to(layer.weight.device)
        else:
            inputs = _inputs(layer, previous, k)
        outputs = unit_modules(layer.weight.shape[0], k).to(layer.weight.device) if index < len(names) - 1 else None
        if outputs is None:  # the classifier reads every module
            modules = inputs[None, :].expand(layer.weight.shape[:2])
        elif inputs is None:  # the first convolution reads every image channel
            modules = outputs[:, None].expand(layer.weight.shape[:2])
        else:
            modules = torch.where(outputs[:, None] == inputs[None, :], outputs[:, None], CROSS)
        out[name] = modules.reshape(*modules.shape, *[1] * (layer.weight.dim() - 2)).expand_as(layer.weight)
        previous = outputs
    return out


def modular_layers(names: list[str], first_reads_all: bool) -> list[str]:
    """The layers whose weights join two modular layers: all but the classifier and a CNN's first convolution."""
    return names[1 if first_reads_all else 0:-1]


def inside_fraction(layers: dict[str, nn.Module], modules: dict[str, torch.Tensor],
                    first_reads_all: bool) -> float | None:
    """Of the non-zero weights between two modular layers, the share that joins a module to itself."""
    inside = total = 0
    for name in modular_layers(list(layers), first_reads_all):
        alive = layers[name].weight.detach() != 0
        total += int(alive.sum())
        inside += int((alive & (modules[name] != CROSS)).sum())
    return inside / total if total else None


def select_modular(scores: dict[str, torch.Tensor], alive: dict[str, torch.Tensor], modules: dict[str, torch.Tensor],
                   n_keep: int, cross_cap: int, min_keep: float) -> dict[str, torch.Tensor]:
    """Keep ``n_keep`` alive weights, ranked by score over all layers (higher is kept), of which at most
    ``cross_cap`` cross modules, with every module of every layer keeping its floor (``min_keep``, see
    :func:`prunekit.pruning.selection.layer_floor`) of its own weights: no module dies unless min_keep=0.
    Fewer survive when the weights allowed are fewer than ``n_keep``; more when the floors alone exceed it."""
    names = list(alive)
    reserved = {}
    for name in names:
        flat_scores, flat_alive, flat_modules = scores[name].flatten(), alive[name].flatten(), modules[name].flatten()
        kept = torch.zeros_like(flat_alive)
        for module in flat_modules.unique().tolist():
            if module == CROSS:
                continue
            block = (flat_modules == module).nonzero().flatten()
            floor = min(layer_floor(min_keep, block.numel()), int(flat_alive[block].sum()))
            kept[block] = top_k(flat_scores[block], flat_alive[block], floor)
        reserved[name] = kept
    flat = lambda d: torch.cat([d[n].flatten() for n in names])  # noqa: E731
    score, live, inside, held = flat(scores), flat(alive), flat(modules) != CROSS, flat(reserved)
    free = max(n_keep - int(held.sum()), 0)
    pick = top_k(score, live & ~held, free)
    if int((pick & ~inside).sum()) > cross_cap:
        pick = top_k(score, live & ~inside, cross_cap) | top_k(score, live & inside & ~held, free - cross_cap)
    keep = (held | pick).split([alive[n].numel() for n in names])
    return {n: k.view_as(alive[n]) for n, k in zip(names, keep)}
