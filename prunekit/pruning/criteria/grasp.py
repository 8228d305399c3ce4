"""GraSP, gradient signal preservation at initialisation (Wang et al. 2020): keep the weights whose removal
would reduce the gradient norm the least, by the score ``w * Hg``.

As the authors' code computes it (github.com/alecwangcq/GraSP, pruner/GraSP.py): with the logits divided by
the temperature T (their default 200), first the gradient g of the cross-entropy over the samples, without a
graph; then Hg as the gradient of ``z = sum(g.detach() * dL/dw)``, where dL/dw is taken with a graph. They
remove the weights of highest ``-w * Hg``, so the score that prunekit keeps the highest of is ``w * Hg``.

Differences from their script, none of which changes the ranking of an untrained network: the losses are
summed over the samples where they average two half-batches (a positive factor), the scores are not divided
by ``|sum of scores|`` (another positive factor), Linear layers are not re-initialised with Xavier-normal
(the run's own initialisation is scored), and the network is read in eval mode (prunekit's convention for
scores; their copy stays in train mode, which at initialisation differs only through BatchNorm's batch
statistics). Pruned weights carry no gradient signal: g is masked, so an iterative schedule scores the
sparse network it has.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from prunekit.config import POSITIVE, MethodConfig, ranged
from prunekit.layers import eval_mode
from prunekit.pruning.criteria import register_criterion
from prunekit.pruning.criteria.context import ScoringContext
from prunekit.pruning.criteria.snip import loss_gradient


@dataclass
class GraspConfig(MethodConfig):
    """method=grasp: w * Hg with softened logits."""

    # Wang et al. 2020 use 10 samples per class on CIFAR-10
    samples_per_class: Optional[int] = ranged(10, 1)
    # the logits are divided by T before the cross-entropy (the authors' code: T=200), which keeps the softmax
    # away from saturation so that Hg carries signal
    temperature: float = ranged(200.0, **POSITIVE)


@register_criterion("grasp", config=GraspConfig, granularities=("weight",), reads_samples=True)
def grasp(context: ScoringContext) -> dict[str, torch.Tensor]:
    """w * Hg per weight: g and H the gradient and Hessian of the summed cross-entropy of logits / T."""
    model, layers, temperature = context.model, context.masks.layers, context.cfg.temperature
    weights = [layer.weight for layer in layers.values()]
    masks = [layer.weight_mask for layer in layers.values()]
    signal = [grad * mask for grad, mask in zip(loss_gradient(model, context.reference_batches(), weights,
                                                              temperature), masks)]
    products = [torch.zeros_like(weight) for weight in weights]
    with eval_mode(model):
        for x, y in context.reference_batches():
            loss = F.cross_entropy(model(x) / temperature, y, reduction="sum")
            grads = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
            z = sum((g * grad).sum() for g, grad in zip(signal, grads) if grad is not None)
            hessian_g = torch.autograd.grad(z, weights, allow_unused=True)
            products = [p if hg is None else p + hg for p, hg in zip(products, hessian_g)]
    return {name: weight.detach() * product for name, weight, product in zip(layers, weights, products)}
