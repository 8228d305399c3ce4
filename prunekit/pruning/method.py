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
from prunekit.pruning.allocation import Allocation, budget, layer_ratios
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.patterns import check_pattern, pattern_of
from prunekit.pruning.selection import check_floors

GRANULARITIES = ("weight", "unit", "input")

class PruningMethod(TrainHook):
    """Scores groups of weights (granularity from ``cfg.granularity``) and prunes the weakest; ``name`` is set
    by the registering decorator, ``granularities`` are those the method supports."""

    name: ClassVar[str]
    granularities: ClassVar[tuple[str, ...]] = GRANULARITIES
    reads_samples: ClassVar[bool] = False  # whether the scores read method.samples_per_class reference samples
    # whether the method's steps keep what the allocation decides (budgets, method.layer_sparsity); a method
    # that ranks by a rule of its own (gates, modules, two targets) says False
    allocates: ClassVar[bool] = True

    def __init__(self, cfg: DictConfig, model: nn.Module, masks: MaskSet, data: Any, seed: int):
        self.cfg, self.model, self.masks, self.data, self.seed = cfg, model, masks, data, seed
        self.allocation = Allocation(cfg, masks)

    @classmethod
    def validate(cls, cfg: DictConfig) -> None:
        """Raise UserError for settings of the whole run config ``cfg`` that this method cannot honour
        (called before any run starts, after the schema's own checks: prunekit/validation.py)."""
        method = cfg.method
        if method.granularity not in cls.granularities:
            raise UserError(f"method.granularity={method.granularity!r} is not allowed for method={cls.name}; "
                            f"choose one of: {', '.join(cls.granularities)}")
        chosen = [f"method.{key}" for key in ("target_flops", "target_params", "layer_sparsity")
                  if method.get(key) is not None]
        if len(chosen) > 1:
            raise UserError(f"{' and '.join(chosen)} both say how much to prune; give one of them")
        if cls.allocates and budget(method) is not None and method.granularity == "weight":
            raise UserError(f"{chosen[0]} prunes to a cost by removing channels or input features; it needs "
                            "method.granularity=unit or input (at weight granularity give method.sparsity)")
        layer_ratios(method)  # a file that cannot be read is refused here
        if pattern_of(method) is not None and (method.granularity != "weight" or chosen):
            raise UserError(f"method.pattern={method.pattern} is a pattern of weights: it needs method.granularity="
                            f"weight and no {' or '.join(chosen) or 'other target'}")

    @classmethod
    def unused_options(cls, cfg: DictConfig) -> dict[str, str]:
        """The options of the method config ``cfg`` that this run does not read, each with the reason; one given
        away from its default is refused before the run starts (prunekit/validation.py)."""
        unused = {}
        if not cls.reads_samples:
            why = f"method={cls.name} reads no reference samples"
            unused.update(samples_per_class=why, score_batch_size=why)
        if cfg.granularity != "unit":
            why = "it applies to coupled channels, at method.granularity=unit"
            unused.update(group_reduction=why, round_to=why)
        if not cls.allocates:
            why = f"method={cls.name} decides how much each layer keeps by a rule of its own"
            unused.update(target_flops=why, target_params=why, layer_sparsity=why)
        chosen = [key for key in ("target_flops", "target_params", "layer_sparsity") if cfg.get(key) is not None]
        if chosen and cls.allocates:
            unused["sparsity"] = f"method.{chosen[0]} says how much to prune"
        if pattern_of(cfg) is not None:
            why = f"method.pattern={cfg.pattern} keeps N of every M weights of each row"
            unused.update(sparsity=why, scope=why)
        return unused

    @classmethod
    def check_network(cls, cfg: DictConfig, masks: MaskSet) -> None:
        """Raise UserError when the method config ``cfg`` cannot be honoured on the network built for the data
        (``masks``: its prunable layers); called before the first stage, when the network's shapes are known."""
        allocation = Allocation(cfg, masks)  # names in method.layer_sparsity are checked here
        if allocation.pattern is not None:
            check_pattern(allocation.pattern, masks.layers)
        elif allocation.budget is not None:
            allocation.check_reachable()
        elif allocation.ratios is None:
            check_floors(allocation.candidates(cfg.granularity)[0], cfg.sparsity, cfg.min_keep,
                         f"method.sparsity={cfg.sparsity}")

    @classmethod
    def schedule_target(cls, cfg: DictConfig) -> float:
        """The level the schedule raises ``prune(level)`` to, for the method config ``cfg``: the sparsity, the
        fraction of the dense cost a budget removes, or the largest fraction of ``method.layer_sparsity``."""
        cost, ratios, pattern = budget(cfg), layer_ratios(cfg), pattern_of(cfg)
        if pattern is not None:
            return pattern.sparsity
        if cost is not None:
            return 1 - cost[1]
        if ratios is not None:
            return max(ratios.values(), default=0.0)
        return cfg.sparsity

    @classmethod
    def summary_entries(cls, cfg: DictConfig) -> dict:
        """What the method (config node ``cfg``) aimed at, for summary.json: the requested sparsity, or the budget
        (``target_flops`` / ``target_params``) or the per-layer fractions it pruned to instead, or its N:M pattern."""
        cost, ratios, pattern = budget(cfg), layer_ratios(cfg), pattern_of(cfg)
        if pattern is not None:
            return {"sparsity_target": pattern.sparsity, "pattern": str(pattern)}
        if cost is not None:
            return {"sparsity_target": None, f"target_{cost[0]}": cost[1]}
        if ratios is not None:
            return {"sparsity_target": None, "layer_sparsity": ratios}
        return {"sparsity_target": cfg.sparsity}

    def scores(self) -> dict[str, torch.Tensor]:
        """Importance per group, higher is kept, shaped as ``masks.groups_alive(granularity)``."""
        raise NotImplementedError

    def prune(self, level: float) -> None:
        """Tighten the masks to ``level`` of :meth:`schedule_target`'s kind (pruned groups stay pruned), keeping
        every layer's ``min_keep`` floor (prunekit/pruning/allocation.py)."""
        self.allocation.prune(self.cfg.granularity, self.scores(), level)

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
