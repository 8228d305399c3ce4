"""What a dataset family's loader hands over, and what every family shares: the fixed stratified split,
the data root, the per-file label check, and errors from third-party readers turned into one line."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from prunekit import rng
from prunekit.errors import UserError, reason


@dataclass
class Source:
    """Train and test data as CPU tensors, before the validation split, statistics and device placement.

    ``x`` is uint8 N x C x H x W for images, or float32 N x F (N x C x H x W when tabular data is shown as
    an image); ``y`` is int64 class indices.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    # When only some classes were kept (prunekit/data/classes.py): their labels in the full dataset, in the
    # order of the new labels 0..num_classes-1, and how many classes the full dataset has.
    classes: list[int] | None = None
    total_classes: int | None = None
    # Fixed per-channel normalisation instead of statistics of the train split (ImageNet's, which pretrained
    # networks expect whatever subset they see).
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @classmethod
    def held_out(cls, x: torch.Tensor, y: torch.Tensor, num_classes: int, test_fraction: float, seed: int) -> Source:
        """Split one pool of samples into train and test with :func:`stratified_split`."""
        train, test = stratified_split(y, test_fraction, seed)
        return cls(x[train], y[train], x[test], y[test], num_classes)


def stratified_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(kept, held_out)``: ``round(fraction * n_c)`` samples of every class ``c`` are held out.

    The samples are drawn by a CPU generator seeded with ``seed`` and depend on ``(y, fraction, seed)`` only,
    so a split never changes with the run's seed. Both index tensors are sorted, keeping the source order.
    """
    generator = torch.Generator().manual_seed(rng.fold(seed))
    kept, held = [torch.empty(0, dtype=torch.long)], [torch.empty(0, dtype=torch.long)]
    for label in torch.unique(y):
        members = (y == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = round(fraction * len(members))
        held.append(members[:count])
        kept.append(members[count:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def torchvision_dataset(name: str) -> type:
    """torchvision's dataset class ``name``, imported on first use: torchvision takes over a second to
    import, which runs on MLPs and bundled data never need."""
    import torchvision.datasets

    return getattr(torchvision.datasets, name)


def data_root(cfg: DictConfig) -> Path:
    """``data.root`` with ``~`` expanded."""
    return Path(cfg.root).expanduser()


def check_label_range(path: Path, labels: torch.Tensor, num_classes: int) -> None:
    """Raise UserError naming ``path`` unless every label read from it is a class index in 0..num_classes-1.

    Loaders call this for each file they read, so that the message points at the damaged file; the check
    in :func:`prunekit.data.dataset.assemble` sees only the concatenated labels and cannot name one.
    """
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"{path}: labels span {int(labels.min())}..{int(labels.max())} but the classes are "
            f"0..{num_classes - 1}; the file is damaged or belongs to another dataset, replace it"
        )
