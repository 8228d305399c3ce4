"""The in-memory dataset: splits held on the device, normalisation, and batching (the training hot path).

There is no DataLoader: every split lives on the run's device as one tensor, a batch is an
``index_select`` of it, and conversion to float, augmentation and normalisation happen per batch on the
device. Images stay uint8 until then, which keeps large sets at a quarter of their float size.

Under several ranks (prunekit/distributed) every rank walks the same order and takes its share of each batch
(:class:`Shard`): one rank and N ranks see the same global batches. The streaming path
(prunekit/data/streaming.py) offers the same interface for sets that do not fit.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig

from prunekit.data.augment import CropFlip
from prunekit.data.source import Source, stratified_split
from prunekit.data.statistics import SPLITS, channel_stats, fingerprint
from prunekit.errors import UserError, warn

VAL_SEED = 0  # the validation split is the same for every run seed


@dataclass(frozen=True)
class Shard:
    """One rank's share of every batch: the positions ``rank``, ``rank + size``, ... of it (as torch's
    DistributedSampler deals a pass), so the ranks' shares of one batch together are that batch."""

    rank: int
    size: int

    def positions(self, start: int, stop: int) -> torch.Tensor:
        """This rank's positions among ``start..stop-1`` of a pass."""
        return torch.arange(start + self.rank, stop, self.size)


@dataclass
class Split:
    x: torch.Tensor  # uint8 images N x C x H x W, or float32 N x F (N x C x H x W for tabular data as images)
    y: torch.Tensor  # int64 labels

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]  # (C, H, W) for images, (F,) for tabular data
    is_image: bool
    # per channel (images, in units of 0..1 for uint8) or per feature: from the train split, or fixed by the
    # source (ImageNet's own, which pretrained networks expect)
    mean: torch.Tensor
    std: torch.Tensor
    crop_padding: int
    hflip: bool
    # The labels, in the full dataset, of the classes 0..num_classes-1 when only some were kept (data.classes or
    # data.class_subset), and the full dataset's number of classes; None when every class is kept.
    classes: list[int] | None = None
    total_classes: int | None = None
    # What the splits hold (see :func:`fingerprint`): tells apart data from other files, splits or classes.
    fingerprint: str = field(init=False)
    # Normalisation as one fused multiply-add per batch: x * scale + shift == (x / 255 - mean) / std.
    _scale: torch.Tensor = field(init=False, repr=False)
    _shift: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.fingerprint = fingerprint(self)
        unit = 1 / 255 if self.train.x.dtype == torch.uint8 else 1.0
        self._scale, self._shift = scale_shift(self.mean, self.std, unit, len(self.input_shape))

    @property
    def original_classes(self) -> list[int]:
        """The labels in the full dataset of the classes 0..num_classes-1."""
        return list(self.classes) if self.classes is not None else list(range(self.num_classes))

    @property
    def full_num_classes(self) -> int:
        """The number of classes of the full dataset, before any selection."""
        return self.total_classes if self.total_classes is not None else self.num_classes

    def split(self, name: str) -> Split:
        """The split called ``name`` (train, val or test)."""
        if name not in SPLITS:
            raise ValueError(f"split={name!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def num_batches(self, split: str, batch_size: int) -> int:
        """How many batches :meth:`batches` yields, the last partial one included."""
        return math.ceil(len(self.split(split)) / batch_size)

    def num_samples(self, split: str) -> int:
        """How many samples ``split`` holds."""
        return len(self.split(split))

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        generator: torch.Generator | None = None,
        shard: Shard | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised float32 batches ``(x, y)`` on the device; the last partial batch is kept.

        ``shuffle`` orders the split by ``torch.randperm(n, generator=generator)``; ``augment`` (train only)
        applies random crop and flip as configured, with random numbers from the same CPU generator, so a
        caller that seeds the generator per epoch gets reproducible epochs. With ``shard``, each batch is this
        rank's share of it (the order and the crops are drawn for the whole pass, as without).
        """
        data = self.split(split)
        if augment and split != "train":
            raise ValueError(f"augment=True on split {split!r}; augmentation is for the train split only")
        n, device = len(data), data.y.device
        order = torch.randperm(n, generator=generator).to(device) if shuffle else None
        crop_flip = None
        if augment and self.is_image and (self.crop_padding > 0 or self.hflip):
            crop_flip = CropFlip.draw(n, self.crop_padding, self.hflip, generator, device)
        for start in range(0, n, batch_size):
            positions = slice(start, start + batch_size)
            if shard is not None:
                positions = shard.positions(start, min(start + batch_size, n)).to(device)
            if order is None and shard is None:
                x, y = data.x[positions], data.y[positions]
            else:
                index = order[positions] if order is not None else positions
                x, y = data.x.index_select(0, index), data.y.index_select(0, index)
            if crop_flip is not None:
                x = crop_flip.apply(x, positions)
            yield self.normalise(x), y

    def samples(self, split: str, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw samples (uint8 images or float features, not normalised) and labels of ``split`` at
        ``index``."""
        data = self.split(split)
        index = index.to(data.y.device)
        return data.x.index_select(0, index), data.y.index_select(0, index)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Raw samples of this dataset (uint8 images or float features) as the network receives them."""
        return torch.addcmul(self._shift, x.to(torch.float32), self._scale)


def scale_shift(mean: torch.Tensor, std: torch.Tensor, unit: float, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` with ``x * scale + shift == (x * unit - mean) / std`` per channel (or feature) of samples
    of ``dims`` dimensions, shaped to broadcast over a batch: :meth:`Dataset.normalise` as one fused multiply-add."""
    shape = (1, -1) + (1,) * (dims - 1)
    return (unit / std).view(shape), (-mean / std).view(shape)


def assemble(name: str, source: Source, cfg: DictConfig, device: torch.device) -> Dataset:
    """Carve the validation split, compute statistics on the rest of train, and move everything to ``device``."""
    num_classes = source.num_classes
    # A safety net only: the loaders that read files check each file and name it (source.check_label_range);
    # this catches a loader that does not, before misaligned or foreign labels reach training.
    for split, x, y in (("train", source.train_x, source.train_y), ("test", source.test_x, source.test_y)):
        if len(x) != len(y):
            raise UserError(
                f"{name}: the {split} data holds {len(x)} samples but {len(y)} labels; the files under data.root "
                "are damaged, replace them"
            )
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise UserError(
                f"{name}: {split} labels span {int(y.min())}..{int(y.max())} but the dataset has classes "
                f"0..{num_classes - 1}; the files under data.root are damaged, replace them"
            )
    shapes = [tuple(x.shape[1:]) for x in (source.train_x, source.test_x)]
    if shapes[0] != shapes[1]:  # a network takes one input size: it would fail in the first test batch
        raise UserError(
            f"{name}: the train samples are {'x'.join(map(str, shapes[0]))} but the test samples "
            f"{'x'.join(map(str, shapes[1]))}; the files under data.root are of different datasets, replace them"
        )
    is_image = source.train_x.dim() == 4
    if not is_image and (cfg.augment.crop_padding or cfg.augment.hflip):
        raise UserError(
            f"data.augment (crop_padding={cfg.augment.crop_padding}, hflip={cfg.augment.hflip}) needs images but "
            f"{name} is tabular here; set data.augment.crop_padding=0 data.augment.hflip=false"
        )
    train, val = stratified_split(source.train_y, cfg.val_fraction, VAL_SEED)
    check_splits(name, cfg, source, len(train), len(val))
    splits = {
        "train": Split(source.train_x[train], source.train_y[train]),
        "val": Split(source.train_x[val], source.train_y[val]),
        "test": Split(source.test_x, source.test_y),
    }
    splits = {key: Split(s.x.to(device), s.y.to(device)) for key, s in splits.items()}
    if source.mean is not None:
        mean, std = (torch.tensor(values, dtype=torch.float32, device=device) for values in (source.mean, source.std))
    else:
        mean, std = channel_stats(splits["train"].x)
    return Dataset(
        name=name,
        **splits,
        num_classes=num_classes,
        input_shape=tuple(source.train_x.shape[1:]),
        is_image=is_image,
        mean=mean,
        std=std,
        crop_padding=cfg.augment.crop_padding,
        hflip=cfg.augment.hflip,
        classes=source.classes,
        total_classes=source.total_classes,
    )


def check_splits(name: str, cfg: DictConfig, source, train: int, val: int) -> None:
    """Refuse a train or test split without a sample, naming the options that emptied it; warn when
    data.val_fraction asks for validation samples and rounding leaves none. ``source``: what was read, with
    ``classes``, ``train_y`` and ``test_y`` (a :class:`Source`, or the streaming path's ImageFiles)."""
    kept = ""
    if cfg.get("classes") is not None:
        kept = f" of data.classes={list(cfg.classes)}"
    elif cfg.get("class_subset") is not None:
        kept = f" of the classes data.class_subset={cfg.class_subset} drew ({source.classes})"
    loaded = len(source.train_y)
    if train == 0 and loaded:
        raise UserError(
            f"{name}: the train split holds no sample: data.val_fraction={cfg.val_fraction} moves all {loaded} "
            f"training samples{kept} into the val split; lower data.val_fraction"
        )
    for split, count in (("train", loaded), ("test", len(source.test_y))):
        if count == 0:
            fix = "choose other classes" if kept else "the files under data.root are empty, replace them"
            raise UserError(f"{name}: the {split} split holds no sample: the {split} data has none{kept}; {fix}")
    if val == 0 and cfg.val_fraction > 0:
        warn(f"data.val_fraction={cfg.val_fraction} of {loaded} training samples{kept} rounds to no sample of any "
             "class: the val split is empty and val metrics are left out; raise it, or set data.val_fraction=0")
