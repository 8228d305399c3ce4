"""The data a network is fed: a dataset, narrowed to the input features that survived compaction.

Batches are made as always (order, augmentation and normalisation on the full samples, so nothing
about them changes) and then reduced to the kept inputs: for an MLP, flattened features (pixels); for a
CNN, input channels. The dataset itself is never copied or changed.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from prunekit.data.dataset import Dataset


@dataclass
class DataView:
    dataset: Dataset
    kept: list[int] | None = None  # kept input features (flattened) or channels; None: all of them
    flattened: bool = True  # True: kept indexes flattened samples (MLP); False: channels (CNN)

    def __post_init__(self) -> None:
        self._index = None
        if self.kept is not None:
            self._index = torch.tensor(self.kept, dtype=torch.long, device=self.dataset.train.y.device)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def full_shape(self) -> tuple[int, ...]:
        """The shape of one sample as the dataset holds it."""
        return self.dataset.input_shape

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample as the network receives it."""
        if self.kept is None:
            return self.full_shape
        if self.flattened:
            return (len(self.kept),)
        return (len(self.kept), *self.full_shape[1:])

    @property
    def total_inputs(self) -> int:
        """How many input features (flattened) or channels the dataset's samples have."""
        return math.prod(self.full_shape) if self.flattened else self.full_shape[0]

    @property
    def fraction_kept(self) -> float:
        """The share of the dataset's input features still fed (1.0 when none was removed)."""
        return 1.0 if self.kept is None else len(self.kept) / self.total_inputs

    def narrowed(self, kept: list[int] | None, flattened: bool) -> DataView:
        """This view fed only ``kept`` (positions in the dataset's full samples)."""
        return DataView(self.dataset, kept, flattened)

    def num_batches(self, split: str, batch_size: int) -> int:
        return self.dataset.num_batches(split, batch_size)

    def num_samples(self, split: str) -> int:
        return self.dataset.num_samples(split)

    def batches(self, split: str, batch_size: int, **kwargs) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The dataset's batches (same arguments as :meth:`Dataset.batches`), reduced to the kept inputs."""
        for x, y in self.dataset.batches(split, batch_size, **kwargs):
            yield self._narrow(x), y

    def samples(self, split: str, index: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The samples of ``split`` at positions ``index``, normalised and reduced to the kept inputs, in
        batches of at most ``batch_size`` (no augmentation: what the network sees at evaluation)."""
        for chunk in index.split(batch_size):
            x, y = self.dataset.samples(split, chunk)
            yield self._narrow(self.dataset.normalise(x)), y

    def _narrow(self, x: torch.Tensor) -> torch.Tensor:
        if self._index is None:
            return x
        return x.flatten(1).index_select(1, self._index) if self.flattened else x.index_select(1, self._index)
