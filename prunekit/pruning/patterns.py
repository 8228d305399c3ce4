"""N:M sparsity (``method.pattern=2:4``): of every M consecutive weights of an output row, N stay.

The pattern is the one NVIDIA's sparse tensor cores run (2:4) and the one SparseGPT and Wanda report beside
unstructured sparsity. A row is ``weight.flatten(1)``: a Linear layer's inputs, a convolution's unfolded
inputs in (channel, kernel row, kernel column) order, as its weights are stored. Any weight-granularity method
may ask for it: its scores pick the N of each group (prunekit/pruning/allocation.py), and post-training methods
that select while they reconstruct (SparseGPT) call :func:`n_of_m` on their own saliencies.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from prunekit.errors import UserError


@dataclass(frozen=True)
class Pattern:
    """N of every M consecutive weights of a row stay."""

    n: int
    m: int

    @property
    def sparsity(self) -> float:
        return 1 - self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


def pattern_of(cfg: DictConfig) -> Pattern | None:
    """``method.pattern`` of the method config ``cfg`` as a :class:`Pattern`, None when unset; a malformed
    value is one line."""
    text = cfg.get("pattern")
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(text))
    if match is None or not 0 < int(match[1]) < int(match[2]):
        raise UserError(f"method.pattern={text} is not allowed; give N:M with 0 < N < M (e.g. 2:4 or 4:8)")
    return Pattern(int(match[1]), int(match[2]))


def check_pattern(pattern: Pattern, layers: dict[str, nn.Module]) -> None:
    """Refuse (one line) a pattern whose M does not divide some prunable layer's row length."""
    for name, layer in layers.items():
        columns = layer.weight[0].numel()
        if columns % pattern.m:
            raise UserError(f"method.pattern={pattern} groups every {pattern.m} weights of a row, but layer {name} "
                            f"has rows of {columns}; choose an M that divides every layer's row length")


def n_of_m(scores: torch.Tensor, alive: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """A keep mask shaped like ``alive`` (a weight mask): in every group of M consecutive entries of a row, the N
    alive entries of highest score (fewer where fewer are alive; a pruned weight never comes back)."""
    rows = alive.shape[0]
    grouped_alive = alive.reshape(rows, -1, pattern.m)
    ranked = torch.nan_to_num(scores.to(alive.device).float(), nan=-torch.inf).reshape(rows, -1, pattern.m)
    ranked = ranked.masked_fill(~grouped_alive, -torch.inf)
    chosen = torch.zeros_like(grouped_alive)
    chosen.scatter_(2, ranked.topk(pattern.n, dim=2).indices, True)
    return (chosen & grouped_alive).reshape(alive.shape)
