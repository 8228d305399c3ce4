"""Network slimming (Liu et al. 2017, "Learning efficient convolutional networks through network slimming").

1. While the pruning stage trains, an L1 penalty ``penalty * sum |gamma|`` on the scales gamma of the BatchNorm
   layers that follow the prunable layers pushes the scales of unneeded channels towards 0. As in the authors'
   PyTorch code (github.com/Eric-mingjie/network-slimming, main.py ``updateBN``), its subgradient
   ``penalty * sign(gamma)`` is added to the gradient after backward (:meth:`Slimming.before_step`), rather than
   as a loss term: the same gradient (autograd's derivative of |x| at 0 is sign(0) = 0 too), but the recorded
   training loss stays the task loss every other method records, and no graph is built over the scales.
2. Channels are ranked by |gamma| (:meth:`Slimming.scores`) through the allocation, so coupled groups (a
   residual stream's channels reduce their writers' |gamma| by ``method.group_reduction``) and budgets
   (``method.target_flops``) work as for every unit criterion. The paper ranks all channels of the network
   together (``scope: global`` in configs/method/slimming.yaml): the penalty puts every gamma on one scale.

A prunable layer without a following BatchNorm (a CNN's hidden Linear layer) has no gamma: slimming does not
prune it, nor a coupled group one of whose writers is such a layer. Its channels score +inf, so they are the last
a global ranking would take, and :meth:`check_network` refuses every setting that would take them anyway (a
per-layer ranking, a ``method.layer_sparsity`` naming it, a sparsity or a budget the scaled channels cannot reach
alone); a network without any such BatchNorm is refused.
The penalty is a function of the scales alone, so a resumed run needs no state of the method's own.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from prunekit.config import MethodConfig, one_of, ranged
from prunekit.errors import UserError
from prunekit.pruning.allocation import Allocation, layer_ratios
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.method import PruningMethod
from prunekit.pruning.methods import register_method
from prunekit.pruning.selection import resolved_scope


@dataclass
class SlimmingConfig(MethodConfig):
    """method=slimming: L1 on the BatchNorm scales while the pruning stage trains, then channels by |gamma|."""

    # lambda of the L1 penalty on the BatchNorm scales: the paper's 1e-4 (CIFAR and SVHN; 1e-5 for VGG-A on ImageNet)
    penalty: float = ranged(1e-4, 0)
    # A residual stream's channel (several writers, each with its BatchNorm) by the mean of its writers' |gamma|: on
    # the scale of a channel with one writer, which a sum would not be; Torch-Pruning's BNScaleImportance does the same
    group_reduction: str = one_of("mean", "sum", "mean", "max")


def batchnorm_scales(masks: MaskSet) -> dict[str, torch.nn.Parameter]:
    """Each prunable layer's channel scales gamma: the weight of the BatchNorm that follows it (none for a layer
    without one, or with a BatchNorm without affine parameters)."""
    return {name: norm.weight for name, norm in masks.batchnorms.items()
            if name in masks.layers and norm.weight is not None}


@register_method("slimming", config=SlimmingConfig)
class Slimming(PruningMethod):
    """Network slimming: an L1 penalty on the BatchNorm scales during the pruning stage, channels ranked by |gamma|."""

    granularities = ("unit",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scales = batchnorm_scales(self.masks)

    @classmethod
    def unused_options(cls, cfg: DictConfig) -> dict[str, str]:
        # normalising would also turn the +inf of the layers without gamma into NaN, which ranks first to go
        return {**super().unused_options(cfg),
                "normalize": "method=slimming ranks the raw |gamma|, which the penalty puts on one scale"}

    @classmethod
    def check_network(cls, cfg: DictConfig, masks: MaskSet) -> None:
        scaled = batchnorm_scales(masks)
        if not scaled:
            raise UserError("method=slimming ranks channels by the scale of the BatchNorm after each layer, but this "
                            "network has no BatchNorm after any prunable layer; use a model with BatchNorm (cnn, "
                            "vgg16, resnet18) or another method")
        unscaled = [g for g in masks.channel_groups() if not all(name in scaled for name in g.producers)]
        if unscaled:
            cls._check_unscaled_kept(cfg, masks, unscaled)
        super().check_network(cfg, masks)

    @classmethod
    def _check_unscaled_kept(cls, cfg: DictConfig, masks: MaskSet, unscaled: list) -> None:
        """Refuse (one line) a setting that would remove channels of the groups ``unscaled`` (no gamma)."""
        names = ", ".join(g.name for g in unscaled)
        why = f"layers without a BatchNorm ({names}) have no gamma and are not pruned by method=slimming"
        ratios = layer_ratios(cfg) or {}
        named = [name for g in unscaled for name in g.producers if ratios.get(name)]
        if named:
            raise UserError(f"method.layer_sparsity prunes {', '.join(named)}, but {why}; leave them out")
        if ratios:
            return
        if resolved_scope(cfg.scope, "unit") == "layer":
            raise UserError(f"method.scope={cfg.scope} would remove the same share of every layer, but {why}; "
                            "use method.scope=global")
        allocation = Allocation(cfg, masks)
        alive, _ = allocation.candidates("unit")
        floors = allocation.floors(alive, "unit")
        skipped = {g.name for g in unscaled}
        spare = {key: int(a.sum()) - floors[key] for key, a in alive.items() if key not in skipped}
        if allocation.budget is not None:
            kind, fraction = allocation.budget
            cost = allocation.cost
            lowest = cost.cost(cost.sizes(masks), allocation.buckets("unit"), spare) / cost.dense
            if lowest > fraction:
                raise UserError(f"method.target_{kind}={fraction:g} cannot be reached by the channels with a "
                                f"BatchNorm scale alone (at best {lowest:.4g} of the dense {kind}): {why}")
        else:
            total = sum(a.numel() for a in alive.values())
            removed = total - round((1 - cfg.sparsity) * total)
            if removed > sum(spare.values()):
                raise UserError(f"method.sparsity={cfg.sparsity} removes {removed} of {total} channels, but the "
                                f"channels with a BatchNorm scale can give only {sum(spare.values())}: {why}; lower it")

    def before_step(self) -> None:
        """Add the subgradient ``penalty * sign(gamma)`` of the L1 penalty to every scale's gradient."""
        with torch.no_grad():
            for gamma in self.scales.values():
                if gamma.grad is not None:
                    gamma.grad.add_(torch.sign(gamma), alpha=self.cfg.penalty)

    @torch.no_grad()
    def scores(self) -> dict[str, torch.Tensor]:
        """|gamma| per channel of every layer with a BatchNorm scale, +inf for the others (never taken, see
        :meth:`check_network`)."""
        return {name: (self.scales[name].abs().float() if name in self.scales
                       else torch.full(alive.shape, torch.inf, device=alive.device))
                for name, alive in self.masks.groups_alive("unit").items()}
