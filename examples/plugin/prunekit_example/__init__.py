"""method=example: first-order weight saliency, a criterion of one's own registered from outside prunekit.

A weight's score is |sum over reference samples of w * dL/dw| (or its square with ``method.power=2``): the
first-order Taylor estimate of how much the loss changes when the weight is set to zero (Molchanov et al.
2019; SNIP's |g * w| at a trained point). prunekit draws the reference samples (``method.samples_per_class``),
normalises, ranks and masks; this file only scores. The gradients are taken with torch.autograd.grad, so
the parameters' .grad that the training step uses stay untouched.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from prunekit.config import MethodConfig, ranged
from prunekit.pruning.criteria import register_criterion
from prunekit.pruning.criteria.context import ScoringContext


@dataclass
class ExampleConfig(MethodConfig):
    power: int = ranged(1, 1, 2)  # 1: |w * g|; 2: (w * g)^2


@register_criterion("example", config=ExampleConfig, granularities=("weight",), reads_samples=True)
def example(context: ScoringContext) -> dict[str, torch.Tensor]:
    """|sum of w * dL/dw| per weight over reference samples (first-order Taylor saliency; a plug-in)."""
    layers = context.masks.layers
    weights = [layer.weight for layer in layers.values()]
    totals = [torch.zeros_like(weight) for weight in weights]
    was_training = context.model.training
    context.model.eval()  # BatchNorm reads its running statistics: scoring must not move them
    try:
        for x, y in context.reference_batches():
            loss = F.cross_entropy(context.model(x), y, reduction="sum")
            for total, grad in zip(totals, torch.autograd.grad(loss, weights)):
                total += grad
    finally:
        context.model.train(was_training)
    return {name: (weight.detach() * total).abs() ** context.cfg.power
            for name, weight, total in zip(layers, weights, totals)}
