"""The DataLoader of the streaming path (prunekit/data/streaming.py): a split's image files decoded and augmented
per sample in worker processes, batched as this rank's share of every global batch, and moved to the device.

An item is ``(index in the split, position in the pass)``: the index names the file, the position seeds the
sample's augmentation, so a crop depends neither on which worker reads it nor on how many ranks share the batch.
"""
from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from prunekit import rng
from prunekit.data.dataset import Shard
from prunekit.data.images import Fit, open_rgb
from prunekit.errors import UserError

Items = list[tuple[int, int]]  # one batch: (index in the split, position in the pass) per sample

# Workers are forked from the process that trains (on Linux, as DataLoader does by default): a rank that torch's
# launcher spawned would otherwise spawn them too, a fresh interpreter per worker and pass (seconds each).
WORKER_START = "fork" if sys.platform == "linux" else None


@dataclass
class FileSplit:
    """One split of the streaming path: its files, relative to ``root``, and their labels."""

    root: Path
    # Relative paths as one bytes array, not a list of str: forked workers then share its pages instead of
    # copying them as reference counts change.
    files: np.ndarray
    labels: torch.Tensor  # int64 on the CPU, for the workers
    y: torch.Tensor  # the same labels on the run's device

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Unreadable:
    """A worker's report of a file it could not read, raised as a UserError in the training process (an exception
    raised in a worker would come back with the worker's traceback in its message)."""

    message: str


class Reader(torch.utils.data.Dataset):
    """One split's samples for a DataLoader; an item is (index in the split, position in the pass), the position
    seeding the sample's augmentation (``seed`` is the pass's draw, None without augmentation)."""

    def __init__(self, split: FileSplit, size: int, fit: Fit, seed: int | None, crop: bool, flip: bool):
        from torchvision.transforms import v2  # imported on first use, as torchvision datasets are (source.py)

        self.split, self.size, self.fit, self.seed, self.to_tensor = split, size, fit, seed, v2.functional.pil_to_tensor
        self.crop = v2.RandomResizedCrop(size) if seed is not None and crop else None
        self.flip = v2.RandomHorizontalFlip() if seed is not None and flip else None

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int] | Unreadable:
        index, position = item
        try:
            image = open_rgb(self.split.root / os.fsdecode(self.split.files[index]))
        except UserError as error:
            return Unreadable(str(error))
        if self.crop is None:
            image = self.fit(image, self.size)
        if self.seed is not None:
            # transforms v2 draw from torch's global CPU generator: seed it per sample and put it back after (with
            # workers=0 this is the training process; torch.manual_seed would reseed the CUDA generators too).
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(rng.derive(self.seed, position))
                image = self.crop(image) if self.crop is not None else image
                image = self.flip(image) if self.flip is not None else image
        return self.to_tensor(image), int(self.split.labels[index])


def collate(items: list, size: int) -> tuple[torch.Tensor, torch.Tensor] | Unreadable:
    """Stack a batch's samples; a batch with an unreadable file becomes that file's report. A rank's share of a
    last batch smaller than the number of ranks may be empty."""
    bad = next((item for item in items if isinstance(item, Unreadable)), None)
    if bad is not None:
        return bad
    if not items:
        return torch.empty((0, 3, size, size), dtype=torch.uint8), torch.empty(0, dtype=torch.long)
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.long)


class PassBatches(torch.utils.data.Sampler):
    """This rank's items (see :class:`Reader`) of every global batch of one pass over ``n`` samples in ``order``
    (None: in order), as :class:`Shard` deals them: one rank and N ranks train on the same global batches, the
    last one partial. torch's DistributedSampler would pad the pass with repeats so that every rank gets as many
    samples, and draw its own order."""

    def __init__(self, order: torch.Tensor | None, n: int, batch_size: int, shard: Shard | None):
        self.order, self.n, self.batch_size, self.shard = order, n, batch_size, shard

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[Items]:
        for start in range(0, self.n, self.batch_size):
            stop = min(start + self.batch_size, self.n)
            positions = self.shard.positions(start, stop) if self.shard is not None else torch.arange(start, stop)
            index = self.order[positions] if self.order is not None else positions
            yield list(zip(index.tolist(), positions.tolist(), strict=True))


def read_batches(reader: Reader, batches: Iterable[Items], workers: int,
                 device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Raw uint8 batches of ``reader``'s items as ``batches`` groups them, read by ``workers`` processes (0: here),
    on ``device`` (pinned first when it is a GPU)."""
    loader = DataLoader(reader, batch_sampler=batches, num_workers=workers,
                        multiprocessing_context=WORKER_START if workers else None,
                        collate_fn=partial(collate, size=reader.size), pin_memory=device.type == "cuda",
                        generator=torch.Generator())  # its seed draw would otherwise move torch's global one
    for batch in loader:
        if isinstance(batch, Unreadable):
            raise UserError(batch.message)
        x, y = batch
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
