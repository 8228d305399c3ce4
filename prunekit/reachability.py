"""Which weights and units of a pruned network are alive: on a path from the input to the output.

A weight is alive when it is non-zero, its input unit is reachable from the network's input through non-zero
weights and its output unit reaches the output (the exact definitions are in prunekit/metrics.py). One
forward and one backward pass through a binary copy of the network decide both directions for every layer.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from prunekit.layers import PRUNABLE, one_sample, prunable_layers


@dataclass
class Reach:
    """What is alive in a network (see :func:`reachability`)."""

    weights: dict[str, torch.Tensor]  # alive weights, per prunable layer
    units: dict[str, torch.Tensor]  # alive output units, per prunable and BatchNorm layer


def _units(t: torch.Tensor, linear: bool) -> torch.Tensor:
    """Reduce an activation (or its gradient) of batch 1 to 'positive somewhere' per unit: the last
    dimension for Linear layers, the channel dimension (spatial positions reduced) otherwise."""
    dim = t.dim() - 1 if linear else 1
    return (t > 0).movedim(dim, 0).reshape(t.shape[dim], -1).any(dim=1)


def _binary_probe(model: nn.Module) -> nn.Module:
    """A float64 copy whose forward pass counts paths: each prunable weight becomes 1 where it is
    non-zero, biases 0, BatchNorm the identity. All values stay >= 0, so ReLU, pooling and residual
    sums act as 'is reachable'; float64 holds path counts of VGG-16 (about 1e53) without overflow."""
    probe = copy.deepcopy(model).double().eval().requires_grad_(False)
    with torch.no_grad():
        for _, layer in prunable_layers(probe):
            layer.weight.copy_(layer.weight != 0)
            if layer.bias is not None:
                layer.bias.zero_()
        for norm in probe.modules():
            if isinstance(norm, _BatchNorm):
                norm.eps = 0.0
                norm.running_mean.fill_(0.0)
                norm.running_var.fill_(1.0)
                if norm.affine:
                    norm.weight.fill_(1.0)
                    norm.bias.fill_(0.0)
    return probe


def _alive_mask(layer: nn.Module, in_reach: torch.Tensor, out_reach: torch.Tensor) -> torch.Tensor:
    """Weight ``[o, i, ...]`` is alive iff non-zero, input unit ``i`` reachable and output ``o`` reaching."""
    # Grouped convolutions see only their group's input channels: weight [o, i] reads channel
    # (o // out_per_group) * in_per_group + i. Linear and ordinary Conv2d have one group.
    groups = getattr(layer, "groups", 1)
    in_reach = in_reach.view(groups, -1).repeat_interleave(layer.weight.shape[0] // groups, dim=0)
    spatial = (1,) * (layer.weight.dim() - 2)
    return (layer.weight != 0) & in_reach.view(*in_reach.shape, *spatial) & out_reach.view(-1, 1, *spatial)


def reachability(model: nn.Module, input_shape: tuple[int, ...]) -> Reach:
    """Forward an all-ones sample through the binary probe (what is reachable from the input) and
    backpropagate from the sum of the outputs (what reaches an output: gradient > 0)."""
    probe = _binary_probe(model)
    watched = {n: m for n, m in probe.named_modules() if isinstance(m, (*PRUNABLE, _BatchNorm))}
    reached_in: dict[str, torch.Tensor] = {}
    reached_out: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}

    def record(name: str, linear: bool):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            # Reduced at once: a later in-place ReLU or residual sum may overwrite these tensors.
            reached_in[name] = _units(args[0].detach(), linear)
            reached_out[name] = _units(output.detach(), linear)
            output.retain_grad()
            outputs[name] = output

        return hook

    handles = [m.register_forward_hook(record(n, isinstance(m, nn.Linear))) for n, m in watched.items()]
    try:
        probe(one_sample(probe, input_shape, 1.0, torch.float64).requires_grad_(True)).sum().backward()
    finally:
        for handle in handles:
            handle.remove()
    reaches = {}
    for name, out in outputs.items():
        if not (torch.isfinite(out).all() and torch.isfinite(out.grad).all()):
            raise ArithmeticError(f"path counts overflowed float64 at layer {name}; the network is too deep")
        reaches[name] = _units(out.grad, isinstance(watched[name], nn.Linear))
    # A unit is alive iff reachable (its output is positive) and reaching (its gradient is positive).
    units = {name: reached_out[name] & reaches[name] for name in outputs}
    weights = {
        name: _alive_mask(layer, reached_in[name], reaches[name])
        if name in outputs
        else torch.zeros_like(layer.weight, dtype=torch.bool)  # never called in the forward pass
        for name, layer in prunable_layers(model)
    }
    return Reach(weights, units)


def cut(model: nn.Module, reach: Reach) -> dict:
    """Where pruning cut the network: ``collapsed_layers`` (prunable layers without an alive weight) and
    ``classes_without_path`` (the classifier's dead units: outputs no input reaches)."""
    layers = prunable_layers(model)
    name, classifier = layers[-1]
    # A classifier the forward pass never calls has no alive unit: no class has a path.
    with_path = reach.units.get(name, torch.zeros(classifier.weight.shape[0], dtype=torch.bool))
    return {
        "collapsed_layers": [n for n, _ in layers if not reach.weights[n].any()],
        "classes_without_path": (~with_path).nonzero().flatten().tolist(),
    }
