"""Joint weight and input-feature pruning: structured sparsity that removes input features from the network
and from the data (DESIGN.md 2.5, the fourth paper).

The paper's three steps, in prunekit's stages:
1. structured sparsity during the pruning stage: a group-lasso term, ``lam`` times the sum over input groups
   of each group's L2 norm (a group is one input feature, a column of the first Linear layer, or one input
   channel of the first convolution), and ``lam_units`` times the same over the hidden units' weight rows;
   the schedule's steps then keep the groups with the largest norms, so that exactly ``input_sparsity`` of
   the input features and ``sparsity`` of the hidden units are gone at the end, each layer keeping its
   ``min_keep`` floor;
2. tracing back: a feature whose whole group is zero reaches nothing;
3. removal: compaction takes those features out of the first layer and out of the data view, and the
   fine-tuning stage retrains the narrower network on the narrower data.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from prunekit.config import FRACTION, MethodConfig, ranged
from prunekit.errors import UserError
from prunekit.layers import group_norms
from prunekit.pruning.method import PruningMethod
from prunekit.pruning.methods import register_method
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.selection import check_floors


@dataclass
class InputPruneConfig(MethodConfig):
    """method=inputprune: input features and units, jointly."""

    granularity: str = "input"
    # Hidden units: the same fraction of every hidden layer (row norms of layers with different fan-in do not
    # compare; scope=global with normalize=l2 ranks them together instead).
    scope: str = "layer"
    sparsity: float = ranged(0.0, **FRACTION)  # fraction of hidden units removed (0: input features only)
    input_sparsity: float = ranged(0.5, **FRACTION)  # fraction of input features (pixels; CNN: channels) removed
    lam: float = ranged(1e-4, 0)  # group lasso on the input groups: lam * sum of each group's L2 norm
    lam_units: float = ranged(0.0, 0)  # the same on the hidden units' weight rows (0: off)


@register_method("inputprune", config=InputPruneConfig)
class InputPrune(PruningMethod):
    """Group lasso on input features (and units), exact top-k on group norms; inputs leave the data."""

    granularities = ("input",)
    allocates = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        first = next((m for m in self.model.modules() if any(True for _ in m.parameters(recurse=False))), None)
        if not isinstance(first, (nn.Linear, nn.Conv2d)):
            raise UserError(f"method=inputprune removes input features through the first layer, which must be Linear "
                            f"or Conv2d; this network's first layer is {type(first).__name__}")

    def _first(self) -> nn.Module:
        return self.masks.layers[self.masks.names[0]]

    @classmethod
    def check_network(cls, cfg: DictConfig, masks: MaskSet) -> None:
        inputs = masks.groups_alive("input")
        features = next(iter(inputs.values())).numel()
        if features < 2:  # a convolution on grey images: its one input channel is all the data there is
            raise UserError(f"method=inputprune removes input features, but this network's first layer reads only "
                            f"{features}; prune pixels with model=mlp, or use a dataset with more channels")
        check_floors(inputs, cfg.input_sparsity, cfg.min_keep, f"method.input_sparsity={cfg.input_sparsity}")
        if cfg.sparsity:
            check_floors(masks.groups_alive("unit"), cfg.sparsity, cfg.min_keep, f"method.sparsity={cfg.sparsity}")

    @classmethod
    def schedule_target(cls, cfg: DictConfig) -> float:
        # The schedule runs to the larger of the two targets; each step moves both the same share of the way.
        return max(cfg.sparsity, cfg.input_sparsity)

    @classmethod
    def summary_entries(cls, cfg: DictConfig) -> dict:
        return {"sparsity_target": cfg.sparsity, "input_sparsity_target": cfg.input_sparsity}

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """The group-lasso term: a true sum of group L2 norms (not an L1 of the weights)."""
        first = self._first()
        total = self.cfg.lam * group_norms(first.weight, 1).sum() if self.cfg.lam else None
        if self.cfg.lam_units:
            units = sum(group_norms(self.masks.layers[name].weight, 0).sum() for name in self.masks.names[:-1])
            total = self.cfg.lam_units * units + (total if total is not None else 0)
        return total

    def prune(self, sparsity: float) -> None:
        """Move both targets ``sparsity / schedule_target`` of the way: inputs to ``input_sparsity`` and hidden
        units to ``method.sparsity``, keeping the inputs and units with the largest group norms."""
        share = sparsity / self.schedule_target(self.cfg)
        for granularity, target, dim in (("input", self.cfg.input_sparsity, 1), ("unit", self.cfg.sparsity, 0)):
            alive = self.masks.groups_alive(granularity)
            if target == 0 or not alive:
                continue
            scores = {name: group_norms(self.masks.layers[name].weight.detach(), dim) for name in alive}
            self.allocation.prune(granularity, scores, share * target)

