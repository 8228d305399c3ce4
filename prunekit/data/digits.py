"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes): the offline default.

The set ships without a test split, so a fixed stratified 20% is held out (seed 0, see
:func:`prunekit.data.source.stratified_split`); it is the same for every run.
"""
from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig

from prunekit.data.registry import register_dataset
from prunekit.data.source import Source

TEST_FRACTION = 0.2
SPLIT_SEED = 0


@register_dataset("digits")
def load(cfg: DictConfig) -> Source:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes); works offline.

    The digits as uint8 1 x 8 x 8 images with a fixed test split."""
    from sklearn.datasets import load_digits  # here, not at the top: scikit-learn is slow to import

    bunch = load_digits()
    # Pixels are 0..16; rescaling to 0..255 (0 and 16 exactly, the rest rounded) makes digits uint8 like
    # every other image set, so it shares their normalisation and augmentation.
    pixels = np.rint(bunch.images * (255 / 16)).astype(np.uint8)
    x = torch.from_numpy(pixels).unsqueeze(1)
    y = torch.from_numpy(bunch.target).long()
    return Source.held_out(x, y, num_classes=10, test_fraction=TEST_FRACTION, seed=SPLIT_SEED)
