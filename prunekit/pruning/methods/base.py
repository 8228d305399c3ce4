"""The interface every pruning method implements.

A post-hoc method only answers "how important is each group?" through :meth:`scores`. A training-time
method (gumbel, group lasso, crespr) may also add a loss term, extra trainable parameters with their own
learning rate, and work around each optimiser step. The training loop calls these hooks without knowing
which method it runs.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from omegaconf import DictConfig
from torch import nn

from prunekit.engine import TrainHook
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.selection import select_groups


class PruningMethod(TrainHook):
    """Scores groups of weights (granularity from ``cfg.granularity``) and prunes the weakest."""

    name: ClassVar[str]
    description: ClassVar[str]
    granularities: ClassVar[tuple[str, ...]] = ("weight", "unit", "input")

    def __init__(self, cfg: DictConfig, model: nn.Module, masks: MaskSet, data: Any, seed: int):
        self.cfg, self.model, self.masks, self.data, self.seed = cfg, model, masks, data, seed

    @classmethod
    def validate(cls, cfg: DictConfig) -> None:
        """Raise UserError for settings this method cannot honour (called before any run starts, after
        the schema's own checks of keys, types and ranges: prunekit/validation.py)."""
        from prunekit.config import choice

        choice(cfg.granularity, list(cls.granularities), f"method.granularity (for method={cls.name})")

    def scores(self) -> dict[str, torch.Tensor]:
        """Importance per group, higher is kept, shaped as ``masks.groups_alive(granularity)``."""
        raise NotImplementedError

    def prune(self, sparsity: float) -> None:
        """Tighten the masks to ``sparsity`` (pruned groups stay pruned), keeping every layer's
        ``min_keep`` floor."""
        alive = self.masks.groups_alive(self.cfg.granularity)
        keep = select_groups(self.scores(), alive, sparsity, self.cfg.scope, self.cfg.min_keep)
        self.masks.set_groups(self.cfg.granularity, keep)

    def param_groups(self, lr: float) -> list[dict]:
        """Extra trainable parameters (e.g. gate logits) with their own learning rate."""
        return []

    def start(self) -> None:
        """Beginning (or resumption) of the pruning stage: install training-time machinery."""

    def finish(self) -> None:
        """End of the pruning stage: settle the final masks (e.g. a deterministic top-k)."""

    def epoch_stats(self) -> dict:
        """Entries for each epoch record of the pruning stage, overriding the pipeline's own (e.g. the
        ``density`` a method's decision would give while its masks are not yet written)."""
        return {}

    def state_dict(self) -> dict:
        """What a resumed run needs to continue exactly where it stopped."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
