"""The reference samples that scoring methods read the network's response on (lrp, taylor, gradient).

``method.samples_per_class=k`` draws k training samples of every class with the run's seed: the LRP
paper's scarce-data setting (k=10), where nothing else of the data is used. ``null`` takes the whole
training split (one pass per scoring). The same samples serve every pruning step of a run, so the scores
change between steps only because the network does.
"""
from __future__ import annotations

import torch

from prunekit import rng
from prunekit.errors import UserError


def reference_index(labels: torch.Tensor, per_class: int | None, seed: int) -> torch.Tensor:
    """Positions in the training split: ``per_class`` of every class drawn with ``seed`` (sorted), or every
    position when ``per_class`` is None. A class with fewer samples than asked for is a UserError."""
    labels = labels.cpu()
    if per_class is None:
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(rng.fold(seed))
    picks = []
    for label in torch.unique(labels).tolist():
        members = (labels == label).nonzero().flatten()
        if len(members) < per_class:
            raise UserError(
                f"method.samples_per_class={per_class} but class {label} has only {len(members)} training "
                f"samples; choose at most {int(torch.bincount(labels).min())} (the smallest class) or null (the whole "
                f"training split)"
            )
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(picks).sort().values
