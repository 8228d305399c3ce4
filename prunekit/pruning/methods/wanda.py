"""Wanda (Sun, Liu, Bair & Kolter 2023, "A Simple and Effective Pruning Approach for Large Language Models").

A weight's score is its magnitude times the L2 norm of the input it reads over the calibration samples,
``|W_ij| * ||X_j||_2``, and the weights are compared within each output row: every row keeps the same share
(the paper's "per output" comparison group, which it found best for language models), or, with
``method.pattern=N:M``, the N best of every M consecutive weights of a row. No weight is updated. The layers are
pruned in forward order, each reading its inputs from the layers already pruned (prunekit/pruning/calibration.py),
as the authors' code does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prunekit.pruning.calibration import CalibratedPruning, CalibrationConfig
from prunekit.pruning.methods import register_method
from prunekit.pruning.patterns import Pattern, n_of_m


@dataclass
class WandaConfig(CalibrationConfig):
    """method=wanda: |W| * ||X|| per output row, no weight update."""


def wanda_scores(weight: torch.Tensor, input_norms: torch.Tensor) -> torch.Tensor:
    """``|W_ij| * ||X_j||_2`` for a weight matrix [outputs, inputs] and its inputs' L2 norms [inputs]."""
    return weight.abs() * input_norms.view(1, -1)


def keep_per_row(scores: torch.Tensor, alive: torch.Tensor, keep: int) -> torch.Tensor:
    """A keep mask of ``keep`` weights in all, spread as evenly as it divides over the rows: every row keeps its
    ``keep // rows`` best alive weights; the ``keep % rows`` rows whose next weight scores highest keep one more
    (with ``keep`` a multiple of the rows, exactly the paper's per-output selection)."""
    rows = scores.shape[0]
    ranked = scores.masked_fill(~alive, -torch.inf).sort(dim=1, descending=True)
    quota = torch.full((rows,), keep // rows, dtype=torch.long, device=scores.device)
    extra = keep % rows
    if extra:
        quota[ranked.values[:, keep // rows].topk(extra).indices] += 1
    chosen = torch.arange(scores.shape[1], device=scores.device).view(1, -1) < quota.view(-1, 1)
    return torch.zeros_like(alive).scatter(1, ranked.indices, chosen) & alive


@register_method("wanda", config=WandaConfig)
class Wanda(CalibratedPruning):
    """Post-training pruning by |W| * ||X|| compared per output row (Sun et al. 2023)."""

    def accumulate(self, columns: torch.Tensor) -> torch.Tensor:
        return columns.pow(2).sum(0)  # the squared norm of every input over the samples

    def prune_layer(self, layer: nn.Module, alive: torch.Tensor, total: torch.Tensor, positions: int,
                    keep: int | None, pattern: Pattern | None) -> tuple[torch.Tensor, torch.Tensor]:
        weight = layer.weight.detach().flatten(1)
        scores = wanda_scores(weight, total.sqrt())
        kept = n_of_m(scores, alive, pattern) if pattern is not None else keep_per_row(scores, alive, keep)
        return weight, kept
