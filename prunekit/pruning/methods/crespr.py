"""Cluster-restricted modular sparsification: our reading of the CRESPR abstract (DESIGN.md 2.4, third paper).

Only the abstract is public, so this is a reading, not the authors' code:
1. an MLP's input features are grouped into ``method.clusters`` K clusters (:mod:`prunekit.pruning.clusters`) and
   every hidden layer's units into K modules (:mod:`prunekit.pruning.modules`); cluster c feeds module c,
   module c feeds module c of the next layer, the classifier reads every module (a CNN: groups of filters,
   block-diagonal convolutions, the first one reading all image channels);
2. at the start of the pruning stage the weights between different modules are pruned, except the best
   ``method.cross`` share of the weights the network keeps (0: none);
3. the schedule then prunes inside that structure by ``method.criterion``: |w|, or the OBD saliency
   0.5 * H_ii * w^2 with the Hessian diagonal estimated on training batches at every step
   (:mod:`prunekit.pruning.hessian`), every module of every layer keeping its ``min_keep`` floor.
The paper's argument (the Hessian stays near block-diagonal, so per-weight saliency stays accurate) is what
``scripts/crespr_hessian.py`` measures; summary.json records how modular the result is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from prunekit import rng
from prunekit.config import FRACTION, MethodConfig, one_of, ranged
from prunekit.data.registry import streams
from prunekit.distributed import world
from prunekit.errors import UserError
from prunekit.pruning.clusters import feature_clusters
from prunekit.pruning.hessian import hessian_diagonal
from prunekit.pruning.method import PruningMethod
from prunekit.pruning.methods import register_method
from prunekit.pruning.modules import select_modular, weight_modules
from prunekit.pruning.selection import normalised

_HESSIAN_STREAM = 6_007  # keeps the Hessian batches and probes apart from other seeded streams of the run


def hidden_widths(model_cfg: DictConfig) -> list[int]:
    """The widths (units or filters) of the hidden prunable layers of the network ``model_cfg`` describes,
    read from a copy built on the meta device (no weights are made or loaded)."""
    from prunekit.layers import prunable_layers
    from prunekit.models import build_model

    spec = {**OmegaConf.to_container(model_cfg, resolve=True), "weights": None}
    if "pretrained" in spec:
        spec["pretrained"] = False
    with torch.device("meta"):
        model = build_model(OmegaConf.create(spec), (3, 224, 224), 2)
    return [layer.weight.shape[0] for _, layer in prunable_layers(model)[:-1]]


@dataclass
class CresprConfig(MethodConfig):
    """method=crespr: our reading of the CRESPR abstract (DESIGN.md 2.4)."""

    sparsity: float = ranged(0.99, **FRACTION)
    clusters: int = ranged(4, 1)  # K: input clusters of an MLP, modules of every hidden layer
    # How an MLP's input features are grouped (a CNN's first convolution reads all image channels, so there the
    # option has nothing to group)
    cluster_by: str = one_of("correlation", "correlation", "spatial", "random")
    cross: float = ranged(0.0, **FRACTION)  # share of the surviving weights that may join two different modules
    criterion: str = one_of("magnitude", "magnitude", "obd")  # magnitude: |w|; obd: 0.5 * H_ii * w^2 (Optimal Brain Damage)
    hessian: str = one_of("fisher", "fisher", "hutchinson")  # how criterion=obd estimates H_ii (prunekit/pruning/hessian.py)
    hessian_batches: int = ranged(1, 1)  # training batches of score_batch_size per estimate, drawn anew at every step
    hessian_probes: int = ranged(1, 1)  # Rademacher probes per batch (hutchinson)


@register_method("crespr", config=CresprConfig)
class Crespr(PruningMethod):
    """K modules fed by input-feature clusters, pruned inside by |w| or OBD (reading of CRESPR)."""

    granularities = ("weight",)
    allocates = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.features = None  # an MLP's input clusters; a CNN's first convolution reads every channel
        if isinstance(self.masks.layers[self.masks.names[0]], nn.Linear):
            dataset = self.data.dataset
            self.features = feature_clusters(self.cfg.cluster_by, self.cfg.clusters, dataset.train.x,
                                             dataset.input_shape, self.seed)

    @classmethod
    def unused_options(cls, cfg: DictConfig) -> dict[str, str]:
        unused = {**super().unused_options(cfg),
                  "samples_per_class": "method=crespr estimates the Hessian on random training batches"}
        del unused["score_batch_size"]  # the Hessian's batches
        if cfg.criterion == "magnitude":
            why = "method.criterion=magnitude estimates no Hessian"
            unused.update(dict.fromkeys(("score_batch_size", "hessian", "hessian_batches", "hessian_probes"), why))
        elif cfg.hessian == "fisher":
            unused["hessian_probes"] = "method.hessian=fisher draws no probes"
        return unused

    @classmethod
    def validate(cls, cfg: DictConfig) -> None:
        super().validate(cfg)
        method = cfg.method
        if method.scope == "layer":
            raise UserError("method.scope='layer' is not allowed for method=crespr, which ranks inside modules; "
                            "choose auto or global")
        if streams(cfg.data):  # its input clusters are drawn from every training sample at once
            raise UserError("method=crespr clusters the input features over the whole training split, which a "
                            "streaming dataset does not hold; set data.streaming=false")
        widths = hidden_widths(cfg.model)
        if not widths:
            raise UserError(f"method=crespr splits hidden layers into modules, but model={cfg.model.name} has none; "
                            f"give it hidden layers (model.hidden)")
        if method.clusters > min(widths):
            raise UserError(f"method.clusters={method.clusters} exceeds the narrowest hidden layer ({min(widths)} "
                            f"units); choose at most {min(widths)}")

    def modules(self) -> dict[str, torch.Tensor]:
        """The module of every weight (or CROSS) of the run's network."""
        return weight_modules(self.masks.layers, self.cfg.clusters, self.features)

    def start(self) -> None:
        """Prune the cross-module weights beyond the allowed share (idempotent, so resuming changes nothing)."""
        self.prune(0.0)

    def scores(self, sparsity: float = 0.0) -> dict[str, torch.Tensor]:
        weights = {name: layer.weight.detach() for name, layer in self.masks.layers.items()}
        if self.cfg.criterion == "magnitude":
            return {name: w.abs() for name, w in weights.items()}
        index = self._hessian_samples(sparsity)
        batches = self.data.samples("train", index, self.cfg.score_batch_size)
        diagonal = hessian_diagonal(self.model, self.masks.layers, batches, self.cfg.hessian,
                                    self._generator(sparsity), self.cfg.hessian_probes)
        diagonal = world.average(diagonal, len(index))  # each rank estimated it on its share of the batches
        return {name: 0.5 * diagonal[name] * w.square() for name, w in weights.items()}

    def _generator(self, sparsity: float) -> torch.Generator:
        # Seeded by the level pruned to, so a resumed run draws what the uninterrupted one drew.
        return torch.Generator().manual_seed(rng.derive(self.seed, _HESSIAN_STREAM + round(sparsity * 1e9)))

    def _hessian_samples(self, sparsity: float) -> torch.Tensor:
        """The training samples of the Hessian's batches (this rank's share of them under several ranks)."""
        size = self.cfg.score_batch_size
        index = torch.randperm(self.data.num_samples("train"), generator=self._generator(sparsity))
        return world.own_positions(index[:self.cfg.hessian_batches * size])

    def prune(self, sparsity: float) -> None:
        """Keep ``round((1 - sparsity) * N)`` weights by the criterion inside the modules, at most ``cross`` of
        them crossing modules, every module of every layer keeping its floor."""
        alive = self.masks.groups_alive("weight")
        total = sum(a.numel() for a in alive.values())
        n_keep = round((1 - sparsity) * total)
        scores = normalised(self.scores(sparsity), self.cfg.normalize)
        keep = select_modular(scores, alive, self.modules(), n_keep, math.floor(self.cfg.cross * n_keep),
                              self.cfg.min_keep)
        self.masks.set_groups("weight", keep)
