"""Boolean masks stored as buffers on the modules, and the groups that pruning decisions are made on.

A mask lives next to the parameter it covers (``weight_mask`` beside ``weight``), so it travels in the
state_dict with the weights. Masks are applied in place after every optimiser step and the gradients of
pruned entries are zeroed before it, so neither momentum nor weight decay can revive a pruned weight.
That costs two fused multiplies per step, against a forward hook on every call for torch's own pruning.
"""
from __future__ import annotations

import torch
from torch import nn

from prunekit.engine import TrainHook
from prunekit.layers import prunable_layers

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
    entries that unit pruning removes together with a neuron or filter."""

    def __init__(self, model: nn.Module):
        self.layers = dict(prunable_layers(model))
        self.names = list(self.layers)
        self.batchnorms = following_batchnorm(model)
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
        """Write a group-level keep decision into the weight (and bias/BatchNorm) masks, then apply."""
        for name, kept in keep.items():
            module = self.layers[name]
            if granularity == "weight":
                module.weight_mask &= kept
                continue
            if granularity == "unit":
                module.weight_mask &= kept.view(-1, *[1] * (module.weight.dim() - 1))
                for target in (module, self.batchnorms.get(name)):
                    if target is not None and getattr(target, "bias_mask", None) is not None:
                        target.bias_mask &= kept
                bn = self.batchnorms.get(name)
                if bn is not None and getattr(bn, "weight_mask", None) is not None:
                    bn.weight_mask &= kept
            elif granularity == "input":
                module.weight_mask &= kept.view(1, -1, *[1] * (module.weight.dim() - 2))
        self.refresh()
        self.apply()

    def density(self) -> float:
        """Surviving fraction of all prunable weights."""
        kept = sum(int(m.weight_mask.sum()) for m in self.layers.values())
        total = sum(m.weight_mask.numel() for m in self.layers.values())
        return kept / total
