"""Where each input feature of an MLP sits in the dataset's input: a pixel of an image, or a column.

The first Linear layer reads ``x.flatten()``, so feature ``f`` of an image of shape ``(C, H, W)`` is
channel ``f // (H*W)``, row ``(f % (H*W)) // W``, column ``f % W``. Maps over features are drawn on the
``H x W`` grid, summed over channels.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from prunekit.errors import UserError


def normalise_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """Return ``input_shape`` as a tuple of ints; a bare ``(H, W)`` becomes the image ``(1, H, W)``."""
    shape = tuple(int(d) for d in input_shape)
    if not shape or len(shape) > 3 or any(d <= 0 for d in shape):
        raise UserError(f"input_shape must be (F,), (H, W) or (C, H, W) with positive sizes, got {shape}")
    return (1, *shape) if len(shape) == 2 else shape


def is_image(input_shape: tuple[int, ...]) -> bool:
    """True when the input is an image ``(C, H, W)``, so maps over features are drawn as pictures."""
    return len(input_shape) == 3


def feature_count(input_shape: tuple[int, ...]) -> int:
    """Number of input features the first Linear layer reads."""
    return int(np.prod(input_shape))


def pixel_of(feature: int, input_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """(row, col) of an image feature; None for tabular input."""
    if not is_image(input_shape):
        return None
    _, height, width = input_shape
    row, col = divmod(feature % (height * width), width)
    return row, col


def feature_label(feature: int, input_shape: tuple[int, ...]) -> str:
    """Short label for plots: ``(row,col)`` for a pixel (prefixed by the channel if C > 1), else ``f<i>``."""
    pixel = pixel_of(feature, input_shape)
    if pixel is None:
        return f"f{feature}"
    channels, height, width = input_shape
    label = f"({pixel[0]},{pixel[1]})"
    return f"c{feature // (height * width)}{label}" if channels > 1 else label


def to_grid(values: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Per-feature values as an ``H x W`` array, summed over channels (image input only)."""
    channels, height, width = input_shape
    return np.asarray(values, dtype=float).reshape(channels, height, width).sum(axis=0)
