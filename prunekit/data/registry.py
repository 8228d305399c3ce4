"""The dataset registry, and the two entry points the pipeline calls: check_available and load_dataset.

A dataset is a loader registered with :func:`register_dataset` in the file that reads it, its config dataclass
beside it. A loader is called ``load(cfg)`` and the selected classes (data.classes, data.class_subset) are kept
afterwards; with ``reads_selected=True`` it is called ``load(cfg, pick)`` and reads only their files, for sets
too large to read whole (ImageNet). ``check`` is a cheap availability check run before any run directory
exists (None: always there). A dataset of image files that gives ``files`` (``files(cfg, pick)`` -> ImageFiles)
can also stream from them batch by batch (prunekit/data/streaming.py) when its data.streaming says so.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig

from prunekit.config import DataConfig
from prunekit.data.classes import ClassPick
from prunekit.data.dataset import Dataset, assemble
from prunekit.data.source import Source, data_root
from prunekit.data.streaming import ImageFiles, StreamingDataset, stream, wanted
from prunekit.errors import UserError, file_errors
from prunekit.registry import Registry

Loader = Callable[..., Source]

DATASETS: Registry[Loader] = Registry("dataset", "data.name", group="data", base=DataConfig,
                                      packages=("prunekit.data",))


def register_dataset(name: str, *, config: type | None = None, description: str | None = None,
                     check: Callable[[DictConfig], None] | None = None,
                     reads_selected: bool = False,
                     files: Callable[[DictConfig, ClassPick], ImageFiles] | None = None) -> Callable[[Loader], Loader]:
    """Decorator: make the loader available as ``dataset=<name>``."""
    return DATASETS.register(name, config=config, description=description, check=check,
                             reads_selected=reads_selected, files=files)


def check_available(cfg: DictConfig) -> None:
    """Cheap check, before any run directory exists, that ``cfg`` (the data node) can be loaded."""
    entry = DATASETS.get(cfg.name)
    if cfg.augment.crop_padding < 0:
        raise UserError(
            f"data.augment.crop_padding={cfg.augment.crop_padding} must be 0 (off) or a positive number of pixels"
        )
    ClassPick.from_config(cfg, seed=0)  # checks the selection as far as it can without the data (any seed)
    if entry.extra["files"] is not None:
        wanted(cfg)  # checks data.streaming and the augmentation it allows
    if entry.extra["check"] is not None:
        with file_errors(f"data.root={data_root(cfg)}", "read"):  # e.g. a folder without read permission
            entry.extra["check"](cfg)


def streams(cfg: DictConfig) -> bool:
    """Whether the data node ``cfg`` is read from its files batch by batch (``data.streaming``), not held."""
    return DATASETS.get(cfg.name).extra["files"] is not None and wanted(cfg)


def load_dataset(cfg: DictConfig, device: torch.device, seed: int = 0) -> Dataset | StreamingDataset:
    """Load the dataset that ``cfg`` (the data node) names, with its validation split, onto ``device``.

    Only the classes of data.classes or data.class_subset are kept; ``seed`` (the run's) draws the latter.
    """
    check_available(cfg)
    entry, pick = DATASETS.get(cfg.name), ClassPick.from_config(cfg, seed)
    with file_errors(f"data.root={data_root(cfg)}", "read"):  # what a loader does not name a file for
        if streams(cfg):
            return stream(cfg.name, entry.extra["files"](cfg, pick), cfg, device)
        source = entry.target(cfg, pick) if entry.extra["reads_selected"] else pick.apply(entry.target(cfg))
    return assemble(cfg.name, source, cfg, device)
