"""Conventions shared by the explain figures: how a path-weight map is coloured, and how a figure is saved."""
from __future__ import annotations

import io
import pathlib

import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from prunekit.rundir import atomic_write_bytes

PNG_DPI = 130
PATH_WEIGHT_CMAP = "magma"


def path_weight_norm(grid: np.ndarray) -> PowerNorm:
    """Colour scale for a path-weight map: square root from 0, so weakly used pixels stay visible."""
    # Path weights are products along paths and span orders of magnitude; linear would show one hot spot.
    return PowerNorm(0.5, vmin=0.0, vmax=max(float(grid.max()), 1e-12))


def save_figure(fig: Figure, path: pathlib.Path) -> None:
    """Render ``fig`` as PNG and write it to ``path`` atomically (temporary file, then os.replace)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI)
    atomic_write_bytes(path, buffer.getvalue())
