"""Pruning by explaining (Yeom et al. 2021): a unit's score is the relevance LRP assigns to its output.

Relevance comes from zennit (:mod:`prunekit.pruning.relevance`): one-hot relevance of each reference
sample's true class, propagated with the composite ``method.composite`` through the network with its
BatchNorms merged into the convolutions; a unit scores the summed |relevance| at its output over the
samples and positions. Relevance is conserved layer by layer, so scores of different layers are
comparable and are ranked globally without normalisation (``method.normalize`` stays available).
"""
from __future__ import annotations

import pathlib

import torch
from torch import nn

from prunekit import rng
from prunekit.config import choice
from prunekit.pruning.methods import register
from prunekit.pruning.methods.response import ResponseMethod

HEATMAP_SAMPLES = 8  # reference samples drawn as input-relevance heat maps


@register
class LRP(ResponseMethod):
    name = "lrp"
    description = "summed |LRP relevance| at each unit's output over reference samples (zennit, EpsilonPlus)"

    @classmethod
    def validate(cls, cfg) -> None:
        from prunekit.pruning.relevance import COMPOSITES  # zennit is imported only by runs that use it

        super().validate(cfg)
        choice(cfg.method.composite, list(COMPOSITES), "method.composite")

    def unit_scores(self, model, batches, outputs):
        from prunekit.pruning.relevance import unit_relevance

        return unit_relevance(model, batches, outputs, self.cfg.composite)

    def report(self, model: nn.Module, input_shape: tuple[int, ...], out_dir: pathlib.Path) -> dict:
        """The base figures, plus input-relevance heat maps of a few reference samples."""
        from prunekit.explain.relevance_maps import plot_relevance_maps
        from prunekit.pruning.relevance import input_relevance

        entries = super().report(model, input_shape, out_dir)
        dataset = self.data.dataset
        generator = torch.Generator().manual_seed(rng.fold(self.seed))
        index = self.reference[torch.randperm(len(self.reference), generator=generator)[:HEATMAP_SAMPLES]].sort().values
        x = dataset.normalise(dataset.train.x.index_select(0, index.to(dataset.train.y.device)))
        y = dataset.train.y.index_select(0, index.to(dataset.train.y.device))
        relevance = input_relevance(model, x.view(len(x), *input_shape), y, self.cfg.composite)
        plot_relevance_maps(x, relevance, y, input_shape, out_dir / "relevance_maps.png")
        return entries
