"""Pruning by explaining (Yeom et al. 2021): a unit's score is the relevance LRP assigns to its output.

Relevance comes from zennit (:mod:`prunekit.pruning.relevance`): one-hot relevance of each reference
sample's true class, propagated with the composite ``method.composite`` through the network with its
BatchNorms merged into the convolutions; a unit scores the summed |relevance| at its output over the
samples and positions. Relevance is conserved layer by layer, so scores of different layers are
comparable and are ranked globally without normalisation (``method.normalize`` stays available).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from prunekit.config import MethodConfig, one_of
from prunekit.pruning.criteria import register_criterion
from prunekit.pruning.criteria.context import ScoringContext
from prunekit.pruning.units import unit_outputs


@dataclass
class LRPConfig(MethodConfig):
    # epsilon_plus: z+ on convolutions, epsilon on linear layers; zplus: z+ on both
    composite: str = one_of("epsilon_plus", "epsilon_plus", "zplus")


@register_criterion("lrp", config=LRPConfig, granularities=("unit",), reads_samples=True)
def lrp(context: ScoringContext) -> dict[str, torch.Tensor]:
    """Summed |LRP relevance| at each unit's output over reference samples (zennit, EpsilonPlus)."""
    from prunekit.pruning.relevance import unit_relevance  # zennit is imported only by runs that use it

    return unit_relevance(context.model, context.reference_batches(), unit_outputs(context.model),
                          context.cfg.composite)
