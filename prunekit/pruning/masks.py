"""Boolean masks stored as buffers on the modules, and the groups that pruning decisions are made on.

A mask lives next to the parameter it covers (``weight_mask`` beside ``weight``), so it travels in the
state_dict with the weights. Unit decisions are written to whole coupled groups (prunekit/pruning/coupling.py):
a channel goes from every layer that writes it, with its bias and BatchNorm entries, and from every input
position that reads it, so the masked network holds exactly what the compact one will. Masks are applied in place after every optimiser step and the gradients of
pruned entries are zeroed before it, so neither momentum nor weight decay can revive a pruned weight.
That costs two fused multiplies per step, against a forward hook on every call for torch's own pruning.
"""
from __future__ import annotations

import torch
from torch import nn

from prunekit.engine import TrainHook
from prunekit.layers import prunable_layers
from prunekit.pruning.coupling import ChannelGroup, channel_groups

GRANULARITIES = ("weight", "unit", "input")


def following_batchnorm(model: nn.Module) -> dict[str, nn.Module]:
    """Map each prunable layer to the BatchNorm that normalises its output, if one follows it directly.

    torchvision's VGG and ResNet (and our small variants) register a conv's BatchNorm right after it,
    so module order is enough; a width check guards against a coincidental neighbour.
    """
    coupled, previous = {}, None
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            previous = (name, module)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and previous is not None:
            prev_name, prev = previous
            width = prev.out_features if isinstance(prev, nn.Linear) else prev.out_channels
            if module.num_features == width:
                coupled[prev_name] = module
            previous = None
    return coupled


class MaskSet(TrainHook):
    """The masks of one model: one boolean buffer per prunable weight, plus the bias and BatchNorm
    entries that unit pruning removes together with a neuron or filter. ``input_shape`` (one sample's) is
    what finds the coupled groups that unit pruning writes; without it only weight and input masks change."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...] | None = None):
        self.model, self.input_shape = model, input_shape
        self.layers = dict(prunable_layers(model))
        self.names = list(self.layers)
        self.batchnorms = following_batchnorm(model)
        self._groups: list[ChannelGroup] | None = None
        for module in [*self.layers.values(), *self.batchnorms.values()]:
            for pname in ("weight", "bias"):
                param = getattr(module, pname, None)
                mask_name = f"{pname}_mask"
                if param is not None and not hasattr(module, mask_name):
                    module.register_buffer(mask_name, torch.ones_like(param, dtype=torch.bool))
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the float copies used by the fused in-place multiplies; call after masks change."""
        self._params, self._factors = [], []
        for module in [*self.layers.values(), *self.batchnorms.values()]:
            for pname in ("weight", "bias"):
                param = getattr(module, pname, None)
                if param is None:
                    continue
                mask = getattr(module, f"{pname}_mask")
                if not bool(mask.all()):  # fully dense tensors cost nothing per step
                    self._params.append(param)
                    self._factors.append(mask.to(param.dtype))

    def buffers(self) -> dict[str, torch.Tensor]:
        """Every mask buffer of the model by its state-dict name (weights', biases' and BatchNorms')."""
        return {name: buf for name, buf in self.model.named_buffers() if name.endswith("_mask")}

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every pruned entry in place."""
        if self._params:
            torch._foreach_mul_(self._params, self._factors)

    def after_step(self, step: int) -> None:
        """Re-zero pruned entries that the step (momentum, weight decay, Adam) touched."""
        self.apply()

    @torch.no_grad()
    def before_step(self) -> None:
        """Zero the gradients of pruned entries, so the optimiser's state never moves them."""
        pairs = [(p.grad, f) for p, f in zip(self._params, self._factors) if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [f for _, f in pairs])

    def channel_groups(self) -> list[ChannelGroup]:
        """The coupled channel groups of the network (found once, on first use)."""
        if self._groups is None:
            if self.input_shape is None:
                raise ValueError("unit masks are written to coupled groups, which need the input shape: "
                                 "build the MaskSet with input_shape")
            self._groups = channel_groups(self.model, self.input_shape)
        return self._groups

    def channels_alive(self) -> dict[str, torch.Tensor]:
        """Per coupled group (by name), which of its channels are still written by some producer."""
        return {g.name: torch.stack([self.layers[n].weight_mask.flatten(1).any(1)[i.to(self.layers[n].weight.device)]
                                     for n, i in g.producers.items()]).any(0)
                for g in self.channel_groups()}

    def groups_alive(self, granularity: str) -> dict[str, torch.Tensor]:
        """Which groups are still alive, per layer, shaped like that granularity's scores."""
        if granularity == "weight":
            return {n: m.weight_mask for n, m in self.layers.items()}
        if granularity == "unit":
            # The output layer's units are the classes: they can never be removed.
            return {n: self.layers[n].weight_mask.flatten(1).any(1) for n in self.names[:-1]}
        if granularity == "input":
            first = self.names[0]
            return {first: self.layers[first].weight_mask.transpose(0, 1).flatten(1).any(1)}
        raise ValueError(f"unknown granularity {granularity!r}; expected one of {GRANULARITIES}")

    @torch.no_grad()
    def set_groups(self, granularity: str, keep: dict[str, torch.Tensor]) -> None:
        """Write a group-level keep decision (per layer, shaped as :meth:`groups_alive`) into the masks, then
        apply. Unit decisions go to whole coupled groups (see :meth:`set_channels`): a channel stays if any of
        the layers named in ``keep`` that write it keeps it."""
        if granularity == "unit":
            self.set_channels(self._channel_keep(keep))
            return
        for name, kept in keep.items():
            module = self.layers[name]
            if granularity == "weight":
                module.weight_mask &= kept
            elif granularity == "input":
                module.weight_mask &= kept.view(1, -1, *[1] * (module.weight.dim() - 2))
        self.refresh()
        self.apply()

    def _channel_keep(self, keep: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        channels = {}
        for group in self.channel_groups():
            named = [keep[n].to(i.device)[i] for n, i in group.producers.items() if n in keep]
            if named:
                channels[group.name] = torch.stack(named).any(0)
        return channels

    @torch.no_grad()
    def set_channels(self, keep: dict[str, torch.Tensor]) -> None:
        """Keep only the channels ``keep`` (per coupled group, by name) of the groups named: a removed channel
        leaves every producer (weight row, bias, BatchNorm entries) and every input position that reads it."""
        alive = self.channels_alive()
        for group in self.channel_groups():
            if group.name not in keep:
                continue
            kept = alive[group.name] & keep[group.name].to(alive[group.name].device)
            for name, index in group.producers.items():
                units = torch.ones_like(self.layers[name].weight_mask.flatten(1)[:, 0])
                units[index.to(units.device)] = kept
                self._write_units(name, units)
            for name, positions in group.consumers.items():
                mask = self.layers[name].weight_mask
                mask[:, positions[~kept.to(positions.device)].flatten().to(mask.device)] = False
        self.refresh()
        self.apply()

    def _write_units(self, name: str, kept: torch.Tensor) -> None:
        """Remove the units ``~kept`` of one layer: weight rows, bias and the following BatchNorm's entries."""
        module = self.layers[name]
        module.weight_mask &= kept.view(-1, *[1] * (module.weight.dim() - 1))
        bn = self.batchnorms.get(name)
        for target, pname in ((module, "bias"), (bn, "bias"), (bn, "weight")):
            mask = getattr(target, f"{pname}_mask", None) if target is not None else None
            if mask is not None:
                mask &= kept

    def density(self) -> float:
        """Surviving fraction of all prunable weights."""
        kept = sum(int(m.weight_mask.sum()) for m in self.layers.values())
        total = sum(m.weight_mask.numel() for m in self.layers.values())
        return kept / total
