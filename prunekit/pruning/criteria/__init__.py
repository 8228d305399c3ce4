"""Criteria: a post-hoc answer to "how important is each group?", registered as ``method=<name>``.

A criterion is a function from a :class:`ScoringContext` (the network, its masks, the granularity, the method
config, the reference samples) to one score per group, higher is kept, shaped as
``masks.groups_alive(granularity)`` (Torch-Pruning's ``Importance.__call__``, open_lth's ``prune``)::

    @register_criterion("magnitude", granularities=("weight", "unit", "input"))
    def magnitude(context: ScoringContext) -> dict[str, torch.Tensor]: ...

:class:`ScoredPruning` runs any criterion as a method: at every pruning step it scores, normalises
(``method.normalize``) and keeps the best groups (prunekit/pruning/selection.py). A criterion that reads
reference samples says ``reads_samples=True``; its config, if it has options of its own, sits beside it.
Under several ranks such a criterion scores this rank's share of the samples and :class:`ScoredPruning`
averages the scores over the ranks before selecting: every rank keeps the same groups.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from prunekit.config import MethodConfig
from prunekit.distributed import world
from prunekit.pruning.criteria.context import ScoringContext
from prunekit.pruning.method import GRANULARITIES, PruningMethod
from prunekit.registry import Entry, Registry

Criterion = Callable[[ScoringContext], dict[str, torch.Tensor]]

CRITERIA: Registry[Criterion] = Registry("criterion", "method", group="method", base=MethodConfig,
                                         packages=("prunekit.pruning.criteria",))


def register_criterion(name: str, *, config: type | None = None, description: str | None = None,
                       granularities: tuple[str, ...] = GRANULARITIES,
                       reads_samples: bool = False) -> Callable[[Criterion], Criterion]:
    """Decorator: make the scoring function available as ``method=<name>`` for the given granularities."""
    return CRITERIA.register(name, config=config, description=description, granularities=granularities,
                             reads_samples=reads_samples)


class ScoredPruning(PruningMethod):
    """A criterion as a pruning method: score, normalise, keep the best at every step of the schedule."""

    criterion: Entry[Criterion]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.context = ScoringContext(self.cfg, self.model, self.masks, self.data, self.seed, self.reads_samples)

    def scores(self) -> dict[str, torch.Tensor]:
        scores = self.criterion.target(self.context)
        return world.average(scores, len(self.context.reference)) if self.reads_samples else scores


@functools.cache
def scored_method(name: str) -> type[PruningMethod]:
    """The method class that prunes by the criterion registered as ``name``."""
    entry = CRITERIA.get(name)
    return type(f"ScoredPruning[{name}]", (ScoredPruning,), {
        "name": name, "criterion": entry, "granularities": tuple(entry.extra["granularities"]),
        "reads_samples": entry.extra["reads_samples"]})
