"""Generated classification data (scikit-learn's make_classification) for tests and quick checks.

The data is fixed (random_state 0): a run's seed never changes it. There are no redundant or repeated
features and the features are not shuffled, so the first ``informative`` features carry the signal and the
rest are noise: a known ground truth for input-feature pruning. A fixed stratified 20% is held out for
testing (seed 0). With ``shape`` set (e.g. [1, 4, 4]) the features are presented as an image of that shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from prunekit.config import DataConfig, ranged
from prunekit.data.registry import register_dataset
from prunekit.data.source import Source
from prunekit.errors import UserError

TEST_FRACTION = 0.2
SEED = 0


@dataclass
class SyntheticDataConfig(DataConfig):
    samples: int = ranged(2000, 1)
    features: int = ranged(16, 1)
    informative: int = ranged(8, 1)
    num_classes: int = ranged(4, 2)
    shape: list[int] = ranged([], 1)  # e.g. [1, 4, 4] to present features as an image


def check(cfg: DictConfig) -> None:
    """Reject a ``shape`` whose size differs from ``features``."""
    shape = list(cfg.shape)
    if shape and math.prod(shape) != cfg.features:
        raise UserError(
            f"data.shape={shape} holds {math.prod(shape)} values but data.features={cfg.features}; "
            "the product of data.shape must equal data.features (or leave data.shape=[] for a table)"
        )


@register_dataset("synthetic", config=SyntheticDataConfig, check=check)
def load(cfg: DictConfig) -> Source:
    """Generated classification data (make_classification), fixed; a table or an image.

    The generated table (float32 N x F, or N x shape) with a fixed test split."""
    from sklearn.datasets import make_classification  # here, not at the top: scikit-learn is slow to import

    check(cfg)
    try:
        x, y = make_classification(
            n_samples=cfg.samples,
            n_features=cfg.features,
            n_informative=cfg.informative,
            n_redundant=0,
            n_classes=cfg.num_classes,
            shuffle=False,
            random_state=SEED,
        )
    except ValueError as error:
        reason = " ".join(str(error).split())
        raise UserError(
            f"data: samples={cfg.samples} features={cfg.features} informative={cfg.informative} "
            f"num_classes={cfg.num_classes} cannot be generated: {reason}"
        ) from error
    x = torch.from_numpy(x).float()
    if cfg.shape:
        x = x.view(len(x), *cfg.shape)
    return Source.held_out(x, torch.from_numpy(y).long(), cfg.num_classes, TEST_FRACTION, SEED)
