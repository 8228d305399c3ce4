"""Where a unit's output is read: the scoring methods that look at activations (lrp, taylor, gradient).

A unit of a prunable layer is one output feature of a Linear layer or one filter of a Conv2d. Its output
is read after the BatchNorm that directly follows the layer, if there is one (that is what the next layer
sees, and where relevance arrives once zennit has merged the BatchNorm into the convolution), else at the
layer itself. The classifier's units are the classes and are never scored.
"""
from __future__ import annotations

from torch import nn

from prunekit.layers import prunable_layers
from prunekit.pruning.masks import following_batchnorm


def unit_outputs(model: nn.Module) -> dict[str, nn.Module]:
    """Prunable layer name -> the module whose forward output holds that layer's units (all but the
    classifier), in forward order."""
    layers = prunable_layers(model)[:-1]
    batchnorms = following_batchnorm(model)
    return {name: batchnorms.get(name, layer) for name, layer in layers}
