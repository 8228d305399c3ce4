"""What the stages call on a pruning method, and the default that scores and selects.

A method is either a criterion (prunekit/pruning/criteria/: a function from the network, its masks and
reference samples to scores per group, run by ``ScoredPruning``) or a training-time method
(prunekit/pruning/methods/: gumbel, inputprune, crespr) that subclasses :class:`PruningMethod` and overrides
only what it needs of a small protocol: a loss term and work around each step (``TrainHook``), extra
trainable parameters (:meth:`param_groups`), prune to a level (:meth:`prune`), settle the final masks
(:meth:`finish`), and its state for an exact resume. The class-level checks (:meth:`validate`,
:meth:`unused_options`, :meth:`check_network`) run before any work. Measures and figures are not a method's
business: prunekit/explain draws them for every method alike.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from omegaconf import DictConfig
from torch import nn

from prunekit.engine import TrainHook
from prunekit.errors import UserError
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.selection import check_floors, resolved_scope, select_groups

GRANULARITIES = ("weight", "unit", "input")

def normalised(scores: dict[str, torch.Tensor], how: str) -> dict[str, torch.Tensor]:
    """Each layer's scores divided by their L2 norm (``l2``) or their sum (``sum``), or as they are (``none``):
    criteria whose scale differs between layers are ranked globally on a common footing this way."""
    if how == "none":
        return scores
    norm = (lambda s: s.norm()) if how == "l2" else (lambda s: s.sum())
    # A layer whose scores are all zero stays all zero rather than turning into NaNs.
    return {name: s / norm(s).clamp_min(torch.finfo(s.dtype).tiny) for name, s in scores.items()}


class PruningMethod(TrainHook):
    """Scores groups of weights (granularity from ``cfg.granularity``) and prunes the weakest; ``name`` is set
    by the registering decorator, ``granularities`` are those the method supports."""

    name: ClassVar[str]
    granularities: ClassVar[tuple[str, ...]] = GRANULARITIES
    reads_samples: ClassVar[bool] = False  # whether the scores read method.samples_per_class reference samples

    def __init__(self, cfg: DictConfig, model: nn.Module, masks: MaskSet, data: Any, seed: int):
        self.cfg, self.model, self.masks, self.data, self.seed = cfg, model, masks, data, seed

    @classmethod
    def validate(cls, cfg: DictConfig) -> None:
        """Raise UserError for settings of the whole run config ``cfg`` that this method cannot honour
        (called before any run starts, after the schema's own checks: prunekit/validation.py)."""
        if cfg.method.granularity not in cls.granularities:
            raise UserError(f"method.granularity={cfg.method.granularity!r} is not allowed for method={cls.name}; "
                            f"choose one of: {', '.join(cls.granularities)}")

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

    def state_dict(self) -> dict:
        """What a resumed run needs to continue exactly where it stopped."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
