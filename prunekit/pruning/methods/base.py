"""The interface every pruning method implements.

A post-hoc method only answers "how important is each group?" through :meth:`scores`. A training-time
method (gumbel, group lasso, crespr) may also add a loss term, extra trainable parameters with their own
learning rate, and work around each optimiser step. The stages call these hooks without knowing which
method they run: around each step of the pruning stage, at the end of each of its epochs
(:meth:`epoch_end`), at its end (:meth:`finish`), and once the run is evaluated (:meth:`measure`, and
:meth:`report` for the figures).
"""
from __future__ import annotations

from typing import Any, ClassVar

import math
import pathlib

import torch
from omegaconf import DictConfig
from torch import nn

from prunekit.config import choice
from prunekit.engine import TrainHook
from prunekit.explain import explain_mlp
from prunekit.explain.graph import surviving_network
from prunekit.explain.modularity import modularity
from prunekit.explain.units_kept import plot_units_kept
from prunekit.metrics import is_mlp
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.selection import check_floors, resolved_scope, select_groups


NORMALISATIONS = ("none", "l2", "sum")


def normalised(scores: dict[str, torch.Tensor], how: str) -> dict[str, torch.Tensor]:
    """Each layer's scores divided by their L2 norm (``l2``) or their sum (``sum``), or as they are (``none``):
    criteria whose scale differs between layers are ranked globally on a common footing this way."""
    if how == "none":
        return scores
    norm = (lambda s: s.norm()) if how == "l2" else (lambda s: s.sum())
    # A layer whose scores are all zero stays all zero rather than turning into NaNs.
    return {name: s / norm(s).clamp_min(torch.finfo(s.dtype).tiny) for name, s in scores.items()}


class PruningMethod(TrainHook):
    """Scores groups of weights (granularity from ``cfg.granularity``) and prunes the weakest."""

    name: ClassVar[str]
    description: ClassVar[str]
    granularities: ClassVar[tuple[str, ...]] = ("weight", "unit", "input")
    reads_samples: ClassVar[bool] = False  # whether the scores read method.samples_per_class reference samples

    def __init__(self, cfg: DictConfig, model: nn.Module, masks: MaskSet, data: Any, seed: int):
        self.cfg, self.model, self.masks, self.data, self.seed = cfg, model, masks, data, seed

    @classmethod
    def validate(cls, cfg: DictConfig) -> None:
        """Raise UserError for settings of the whole run config ``cfg`` that this method cannot honour
        (called before any run starts, after the schema's own checks: prunekit/validation.py)."""
        choice(cfg.method.granularity, list(cls.granularities), f"method.granularity (for method={cls.name})")
        choice(cfg.method.normalize, list(NORMALISATIONS), "method.normalize")

    @classmethod
    def unused_options(cls, cfg: DictConfig) -> dict[str, str]:
        """The options of the method config ``cfg`` that this run does not read, each with the reason; one given
        away from its default is refused before the run starts (prunekit/validation.py)."""
        if cls.reads_samples:
            return {}
        why = f"method={cls.name} reads no reference samples"
        return {"samples_per_class": why, "score_batch_size": why}

    @classmethod
    def check_network(cls, cfg: DictConfig, masks: MaskSet) -> None:
        """Raise UserError when the method config ``cfg`` cannot be honoured on the network built for the data
        (``masks``: its prunable layers); called before the first stage, when the network's shapes are known."""
        check_floors(masks.groups_alive(cfg.granularity), cfg.sparsity, cfg.min_keep, f"method.sparsity={cfg.sparsity}")

    @classmethod
    def schedule_target(cls, cfg: DictConfig) -> float:
        """The sparsity the schedule raises ``prune(sparsity)`` to, for the method config ``cfg``."""
        return cfg.sparsity

    @classmethod
    def summary_entries(cls, cfg: DictConfig) -> dict:
        """What the method (config node ``cfg``) aimed at, for summary.json: by default the requested sparsity."""
        return {"sparsity_target": cfg.sparsity}

    def scores(self) -> dict[str, torch.Tensor]:
        """Importance per group, higher is kept, shaped as ``masks.groups_alive(granularity)``."""
        raise NotImplementedError

    def prune(self, sparsity: float) -> None:
        """Tighten the masks to ``sparsity`` (pruned groups stay pruned), keeping every layer's
        ``min_keep`` floor; scores are normalised per layer first when ``method.normalize`` asks for it."""
        alive = self.masks.groups_alive(self.cfg.granularity)
        scores = normalised(self.scores(), self.cfg.normalize)
        keep = select_groups(scores, alive, sparsity, resolved_scope(self.cfg.scope, self.cfg.granularity),
                             self.cfg.min_keep)
        self.masks.set_groups(self.cfg.granularity, keep)

    def param_groups(self, lr: float) -> list[dict]:
        """Extra trainable parameters (e.g. gate logits) with their own learning rate."""
        return []

    def start(self) -> None:
        """Beginning (or resumption) of the pruning stage: install training-time machinery."""

    def finish(self) -> None:
        """End of the pruning stage: settle the final masks (e.g. a deterministic top-k)."""

    def epoch_end(self, epoch: int) -> dict:
        """End of an epoch of the pruning stage; returns entries for its record, overriding the stage's
        own (e.g. the ``density`` a method's decision would give while its masks are not yet written)."""
        return {}

    def measure(self, model: nn.Module, input_shape: tuple[int, ...]) -> dict:
        """Entries for summary.json that every run records, with figures or without, from the final network in
        its original shapes: for an MLP, Newman's modularity Q of its surviving network (Louvain communities),
        so that every method is measured alike."""
        if not is_mlp(model):
            return {}
        return {"modularity_q": modularity(surviving_network(model, math.prod(input_shape)))}

    def report(self, model: nn.Module, input_shape: tuple[int, ...], out_dir: pathlib.Path) -> dict:
        """Figures into ``out_dir`` and entries for summary.json, from the final network in its original
        shapes (pruned weights exactly zero). Every method's pruned MLP gets the interpretability figures;
        unit pruning draws the units (neurons, filters) kept per layer."""
        entries = {}
        if self.cfg.granularity == "unit":
            entries["units_kept"] = plot_units_kept(model, out_dir / "units_kept.png")
        if is_mlp(model):
            entries.update(explain_mlp(model, input_shape, out_dir))
        return entries

    def state_dict(self) -> dict:
        """What a resumed run needs to continue exactly where it stopped."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
