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

import pathlib

import torch
from omegaconf import DictConfig
from torch import nn

from prunekit.errors import UserError
from prunekit.pruning.methods import register
from prunekit.pruning.methods.base import PruningMethod, normalised
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.selection import check_floors, resolved_scope, select_groups


def group_norms(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """The L2 norm of every slice of ``weight`` along ``dim`` (dim 1: input groups, dim 0: unit rows)."""
    return weight.transpose(0, dim).flatten(1).norm(dim=1)


@register
class InputPrune(PruningMethod):
    name = "inputprune"
    description = "group lasso on input features (and units), exact top-k on group norms; inputs leave the data"
    granularities = ("input",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        first = next((m for m in self.model.modules() if any(True for _ in m.parameters(recurse=False))), None)
        if not isinstance(first, (nn.Linear, nn.Conv2d)):
            raise UserError(f"method=inputprune removes input features through the first layer, which must be Linear "
                            f"or Conv2d; this network's first layer is {type(first).__name__}")
        self.dense_norms: torch.Tensor | None = None

    def start(self) -> None:
        """Keep the dense first layer's column norms (the beginning of the pruning stage) for the figure."""
        if self.dense_norms is None:
            self.dense_norms = group_norms(self._first().weight.detach(), 1).cpu()

    def state_dict(self) -> dict:
        return {"dense_norms": self.dense_norms}

    def load_state_dict(self, state: dict) -> None:
        self.dense_norms = state["dense_norms"]

    def report(self, model: nn.Module, input_shape: tuple[int, ...], out_dir: pathlib.Path) -> dict:
        """The base figures, plus inputs_kept.png and inputs_kept.csv (the kept features beside the dense
        network's column norms)."""
        from prunekit.explain.inputs_kept import write_inputs_kept

        entries = super().report(model, input_shape, out_dir)
        first = next(m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
        norms = group_norms(first.weight.detach(), 1).cpu()
        dense = self.dense_norms.numpy() if self.dense_norms is not None else None
        write_inputs_kept((norms > 0).int().numpy(), dense, tuple(input_shape), isinstance(first, nn.Conv2d), out_dir)
        return entries

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
            scores = normalised({name: group_norms(self.masks.layers[name].weight.detach(), dim) for name in alive},
                                self.cfg.normalize)
            keep = select_groups(scores, alive, share * target, resolved_scope(self.cfg.scope, granularity),
                                 self.cfg.min_keep)
            self.masks.set_groups(granularity, keep)

