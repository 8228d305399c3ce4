"""The streaming dataset: image files read batch by batch by a DataLoader's workers, for sets that do not fit in
memory (ImageNet at 224 is about 190 GB as uint8).

It offers the stages the interface of the in-memory :class:`prunekit.data.dataset.Dataset`, and the same batches:
a pass is ordered by ``torch.randperm`` over the split from the caller's generator, a rank reads only its share
(:class:`Shard`) of every global batch, and without augmentation an image is resized and cropped exactly as the
in-memory path caches it. Workers (prunekit/data/loader.py) decode with PIL and augment with torchvision's
transforms v2 (RandomResizedCrop, horizontal flip), each sample from a generator seeded by the pass's draw and the
sample's position in the pass: a crop depends neither on the number of workers nor on the number of ranks, and a
resumed run draws the same. Batches travel as uint8 (pinned on CUDA) and are normalised on the device.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from prunekit.config import AugmentConfig, DataConfig, ranged
from prunekit.data.dataset import SPLITS, VAL_SEED, Dataset, Shard, check_splits, scale_shift
from prunekit.data.images import Fit
from prunekit.data.loader import FileSplit, PassBatches, Reader, read_batches
from prunekit.data.source import stratified_split
from prunekit.errors import UserError


@dataclass
class StreamAugmentConfig(AugmentConfig):
    # streaming path: a RandomResizedCrop(data.image_size) of every train image; false: the evaluation resize and
    # centre crop (the in-memory path crops with crop_padding instead)
    resized_crop: bool = True


@dataclass
class StreamingDataConfig(DataConfig):
    """The options of a dataset of image files that can stream (``register_dataset(..., files=...)``)."""

    # auto: stream when every class is read, hold a selection (data.classes, data.class_subset) in memory;
    # true or false force one path
    streaming: bool | str = "auto"
    workers: int = ranged(8, 0)  # DataLoader worker processes per rank; 0 reads in the training process
    augment: StreamAugmentConfig = field(default_factory=StreamAugmentConfig)


def wanted(cfg: DictConfig) -> bool:
    """Whether the data node ``cfg`` (of a dataset that can stream) asks for the streaming path; checks its options."""
    value = cfg.streaming
    if value == "auto":
        value = cfg.get("classes") is None and cfg.get("class_subset") is None
    elif not isinstance(value, bool):
        raise UserError(f"data.streaming={value!r} is not allowed; choose one of: auto, true, false")
    if value and cfg.augment.crop_padding:
        raise UserError(f"data.augment.crop_padding={cfg.augment.crop_padding} pads and crops images held in memory; "
                        "the streaming path crops with data.augment.resized_crop: set data.augment.crop_padding=0, "
                        "or data.streaming=false to hold the set in memory")
    return value


@dataclass
class ImageFiles:
    """What a dataset of image files hands the streaming path (its :class:`Source`): the train and test files,
    relative to ``root``, with their labels, and how an image becomes a sample without augmentation."""

    root: Path
    train: list[str]
    train_y: torch.Tensor
    test: list[str]
    test_y: torch.Tensor
    num_classes: int
    image_size: int
    fit: Fit  # RGB image -> image_size x image_size, as the in-memory path reads it
    mean: tuple[float, ...]  # fixed statistics: a set that does not fit is not measured
    std: tuple[float, ...]
    classes: list[int] | None = None
    total_classes: int | None = None


class StreamingDataset:
    """The interface of :class:`prunekit.data.dataset.Dataset` over image files read as the batches are drawn."""

    is_image = True
    normalise = Dataset.normalise  # the same fused multiply-add, from _scale and _shift

    def __init__(self, name: str, files: ImageFiles, splits: dict[str, FileSplit], cfg: DictConfig,
                 device: torch.device):
        self.name, self.num_classes, self.device = name, files.num_classes, device
        self.train, self.val, self.test = (splits[split] for split in SPLITS)
        self.input_shape = (3, files.image_size, files.image_size)
        self.mean, self.std = (torch.tensor(values, dtype=torch.float32, device=device)
                               for values in (files.mean, files.std))
        self._scale, self._shift = scale_shift(self.mean, self.std, 1 / 255, len(self.input_shape))
        self.classes, self.total_classes = files.classes, files.total_classes
        self.resized_crop, self.hflip, self.workers = cfg.augment.resized_crop, cfg.augment.hflip, cfg.workers
        self._fit = files.fit
        self.fingerprint = fingerprint(splits, files)

    original_classes = Dataset.original_classes
    full_num_classes = Dataset.full_num_classes
    split = Dataset.split
    num_batches = Dataset.num_batches
    num_samples = Dataset.num_samples

    def batches(self, split: str, batch_size: int, *, shuffle: bool, augment: bool,
                generator: torch.Generator | None = None,
                shard: Shard | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """As :meth:`Dataset.batches`; ``augment`` (train only) applies RandomResizedCrop and flip as configured,
        seeded per sample by one draw from ``generator`` after the order and by the sample's position."""
        data = self.split(split)
        if augment and split != "train":
            raise ValueError(f"augment=True on split {split!r}; augmentation is for the train split only")
        order = torch.randperm(len(data), generator=generator) if shuffle else None
        seed = None
        if augment and (self.resized_crop or self.hflip):
            seed = int(torch.randint(0, 2**63 - 1, (), generator=generator))
        reader = Reader(data, self.input_shape[-1], self._fit, seed, self.resized_crop, self.hflip)
        for x, y in read_batches(reader, PassBatches(order, len(data), batch_size, shard), self.workers, self.device):
            yield self.normalise(x), y

    def samples(self, split: str, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw uint8 images (not augmented, not normalised) and labels of ``split`` at ``index``."""
        index = index.cpu()
        pieces = [list(zip(chunk.tolist(), chunk.tolist(), strict=True))  # one piece per worker
                  for chunk in index.tensor_split(max(self.workers, 1)) if len(chunk)]
        reader = Reader(self.split(split), self.input_shape[-1], self._fit, None, False, False)
        parts = list(read_batches(reader, pieces or [[]], self.workers, self.device))
        return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def stream(name: str, files: ImageFiles, cfg: DictConfig, device: torch.device) -> StreamingDataset:
    """The streaming dataset of ``files``, its validation split carved from train as :func:`assemble` carves it."""
    train, val = stratified_split(files.train_y, cfg.val_fraction, VAL_SEED)
    check_splits(name, cfg, files, len(train), len(val))
    paths = {split: np.array([os.fsencode(path) for path in names], dtype=np.bytes_)
             for split, names in (("train", files.train), ("test", files.test))}

    def file_split(names: np.ndarray, labels: torch.Tensor) -> FileSplit:
        return FileSplit(files.root, names, labels, labels.to(device))

    splits = {"train": file_split(paths["train"][train.numpy()], files.train_y[train]),
              "val": file_split(paths["train"][val.numpy()], files.train_y[val]),
              "test": file_split(paths["test"], files.test_y)}
    return StreamingDataset(name, files, splits, cfg, device)


def fingerprint(splits: dict[str, FileSplit], files: ImageFiles) -> str:
    """16 hex digits of a sha256 over each split's relative paths, file sizes and labels, the image size and the
    kept classes: equal only for the same files in the same splits (a file replaced by one of the same size and
    name goes unnoticed: reading every file's bytes would cost a pass over the set)."""
    digest = hashlib.sha256(json.dumps(["files", files.num_classes, files.classes, files.image_size]).encode())
    for name in SPLITS:
        split = splits[name]
        folder = os.path.join(os.fsencode(split.root), b"")  # bytes paths: a third of pathlib's time per file
        sizes = np.array([os.stat(folder + path).st_size for path in split.files.tolist()], dtype=np.int64)
        digest.update(f"{name} {len(split)};".encode())
        digest.update(b"\0".join(split.files.tolist()))
        digest.update(sizes.tobytes())
        digest.update(split.labels.numpy().tobytes())
    return digest.hexdigest()[:16]
