"""Clusters of input features: the subgroups that crespr's modules each process (DESIGN.md 2.4).

Three ways to group the F (flattened) input features into K clusters, each a partition labelled 0..K-1 with
every label used:

- ``correlation``: spectral clustering (scikit-learn) of the features' |Pearson correlation| over the
  training split, so features that vary together are processed together; features that never vary carry
  no information and are dealt round the clusters;
- ``spatial``: contiguous regions of the image grid, a near-square tiling of K tiles (contiguous index
  ranges for tabular data);
- ``random``: a seeded random partition into equal clusters, the control.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from prunekit import rng
from prunekit.errors import UserError

MAX_SAMPLES = 10_000  # training samples the correlation is measured on (drawn with the seed)


def _canonical(labels: np.ndarray) -> torch.Tensor:
    """Relabel clusters in the order of their first feature, so equal partitions get equal labels."""
    _, first = np.unique(labels, return_index=True)
    by_appearance = labels[np.sort(first)]
    relabel = np.empty(labels.max() + 1, dtype=np.int64)
    relabel[by_appearance] = np.arange(len(by_appearance))
    return torch.as_tensor(relabel[labels])


def by_correlation(x: torch.Tensor, k: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    from sklearn.cluster import SpectralClustering

    generator = torch.Generator().manual_seed(rng.fold(seed))
    rows = torch.randperm(len(x), generator=generator)[:MAX_SAMPLES]
    data = x.index_select(0, rows.to(x.device)).flatten(1).double().cpu().numpy()
    varies = data.std(axis=0) > 0
    if varies.sum() < k:
        raise UserError(f"method.clusters={k} but only {int(varies.sum())} input features vary over the training "
                        f"split; choose at most that many, or method.cluster_by=spatial or random")
    affinity = np.abs(np.corrcoef(data[:, varies], rowvar=False))
    spectral = SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels="cluster_qr",
                                  random_state=seed % 2**32)  # numpy seeds are 32-bit
    labels = np.empty(data.shape[1], dtype=np.int64)
    labels[varies] = spectral.fit_predict(affinity)
    labels[~varies] = np.arange(int((~varies).sum())) % k
    return _canonical(labels)


def tiling(k: int) -> tuple[int, int]:
    """Rows and columns of the most nearly square grid of exactly ``k`` tiles (rows <= columns)."""
    rows = max(r for r in range(1, math.isqrt(k) + 1) if k % r == 0)
    return rows, k // rows


def by_position(x: torch.Tensor, k: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    features = math.prod(shape)
    if len(shape) < 2:  # tabular: contiguous index ranges
        return torch.arange(features) * k // features
    height, width = shape[-2:]
    rows, cols = tiling(k)
    if rows > height or cols > width:
        raise UserError(f"method.clusters={k} tiles a {rows}x{cols} grid, more than the {height}x{width} image has")
    tile = (torch.arange(height)[:, None] * rows // height) * cols + torch.arange(width)[None, :] * cols // width
    return tile.flatten().repeat(math.prod(shape[:-2]))  # every channel of a pixel in the pixel's region


def at_random(x: torch.Tensor, k: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    features = math.prod(shape)
    labels = torch.empty(features, dtype=torch.long)
    order = torch.randperm(features, generator=torch.Generator().manual_seed(rng.fold(seed)))
    labels[order] = torch.arange(features) * k // features
    return labels


CLUSTERINGS: dict[str, Callable[[torch.Tensor, int, tuple[int, ...], int], torch.Tensor]] = {
    "correlation": by_correlation,
    "spatial": by_position,
    "random": at_random,
}


def feature_clusters(how: str, k: int, x: torch.Tensor, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """The cluster (0..k-1) of every flattened input feature of samples of ``shape``, from the training
    inputs ``x`` (read by ``correlation`` only) and the run's ``seed``."""
    features = math.prod(shape)
    if features < k:
        raise UserError(f"method.clusters={k} but the data has only {features} input features; choose at most that")
    return CLUSTERINGS[how](x, k, tuple(shape), seed)
