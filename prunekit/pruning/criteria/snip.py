"""SNIP, connection sensitivity at initialisation (Lee et al. 2019): a weight's score is |g * w|, where g is the
gradient of the cross-entropy on a few training samples.

The paper scores the connections of the untrained network on one mini-batch (100 samples on MNIST and
CIFAR-10) and removes the least sensitive at once; prunekit draws that batch as ``method.samples_per_class``
samples of every class (10 on a 10-class set). |g * w| is the derivative of the loss with respect to a
multiplicative mask on w (the paper's c), so no mask variables are needed. The paper normalises the scores by
their sum: one positive factor, which changes no ranking, so it is left out.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.config import MethodConfig, ranged
from prunekit.layers import eval_mode
from prunekit.pruning.criteria import register_criterion
from prunekit.pruning.criteria.context import ScoringContext


@dataclass
class SnipConfig(MethodConfig):
    """method=snip: |g * w| on one class-balanced batch."""

    # Lee et al. 2019 score on a single mini-batch of 100 (MNIST, CIFAR-10): 10 samples of each of 10 classes
    samples_per_class: Optional[int] = ranged(10, 1)


@register_criterion("snip", config=SnipConfig, granularities=("weight",), reads_samples=True)
def snip(context: ScoringContext) -> dict[str, torch.Tensor]:
    """|dL/dw * w| per weight, L the cross-entropy summed over the reference samples."""
    layers = context.masks.layers
    weights = [layer.weight for layer in layers.values()]
    grads = loss_gradient(context.model, context.reference_batches(), weights)
    return {name: (grad * weight.detach()).abs() for name, weight, grad in zip(layers, weights, grads)}


def loss_gradient(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  weights: list[torch.Tensor], temperature: float = 1.0) -> list[torch.Tensor]:
    """The gradient with respect to ``weights`` of the cross-entropy of ``logits / temperature``, summed over the
    samples of ``batches``, in eval mode. No graph is kept and the parameters' ``.grad`` stay untouched
    (torch.autograd.grad), so the training step that follows sees exactly what it would have seen."""
    totals = [torch.zeros_like(weight) for weight in weights]
    with eval_mode(model):
        for x, y in batches:
            loss = F.cross_entropy(model(x) / temperature, y, reduction="sum")
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
            totals = [total if grad is None else total + grad for total, grad in zip(totals, grads)]
    return totals
