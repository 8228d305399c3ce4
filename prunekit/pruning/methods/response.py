"""Methods that score units by the network's response to reference samples: lrp, taylor, gradient.

A unit is a neuron or a convolution filter, read at its output (after its BatchNorm, see
:func:`prunekit.pruning.units.unit_outputs`). The scores are measured in eval mode on the reference samples
(:mod:`prunekit.pruning.reference`), again at every pruning step, and touch neither the weights, the masks
nor the parameters' gradients: the training step that follows sees exactly what it would have seen.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn

from prunekit.pruning.methods.base import PruningMethod
from prunekit.pruning.reference import reference_index
from prunekit.pruning.units import unit_outputs

class ResponseMethod(PruningMethod):
    """Scores units (never single weights) from the network's response to the reference samples."""

    granularities = ("unit",)
    reads_samples = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reference = reference_index(self.data.dataset.train.y, self.cfg.samples_per_class, self.seed)

    def reference_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The reference samples as the network receives them, in batches of ``method.score_batch_size``."""
        return self.data.samples("train", self.reference, self.cfg.score_batch_size)

    def scores(self) -> dict[str, torch.Tensor]:
        return self.unit_scores(self.model, self.reference_batches(), unit_outputs(self.model))

    def unit_scores(self, model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    outputs: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
        """One score per unit of every layer in ``outputs`` (layer name -> module holding its units)."""
        raise NotImplementedError
