"""What a criterion reads: the network, its masks and, for criteria of the network's response, the reference
samples (lrp, taylor, gradient).

A unit is a neuron or a convolution filter, read at its output (after its BatchNorm, see
:func:`prunekit.pruning.units.unit_outputs`). Response scores are measured in eval mode on the reference
samples (:mod:`prunekit.pruning.reference`), again at every pruning step, and touch neither the weights, the
masks nor the parameters' gradients: the training step that follows sees exactly what it would have seen.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from prunekit.distributed import world
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.reference import reference_index


class ScoringContext:
    """The run as a criterion sees it: ``cfg`` (the method config), ``model``, ``masks``, ``granularity``,
    ``data`` (the run's batches), ``seed``; with ``reads_samples``, the reference samples drawn once per run
    (``reference``: this rank's share of them under several ranks)."""

    def __init__(self, cfg: DictConfig, model: nn.Module, masks: MaskSet, data: Any, seed: int,
                 reads_samples: bool = False):
        self.cfg, self.model, self.masks, self.data, self.seed = cfg, model, masks, data, seed
        self.granularity: str = cfg.granularity
        self.reference = (world.own_positions(reference_index(data.dataset.train.y, cfg.samples_per_class, seed))
                          if reads_samples else None)

    def reference_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The reference samples as the network receives them, in batches of ``method.score_batch_size``."""
        return self.data.samples("train", self.reference, self.cfg.score_batch_size)
