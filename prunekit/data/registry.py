"""Dataset names -> loaders, and the two entry points the pipeline calls: check_available and load_dataset."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from prunekit.config import choice
from prunekit.data import caltech, digits, imagenet, synthetic
from prunekit.data.cifar import CifarSet
from prunekit.data.classes import ClassPick
from prunekit.data.dataset import Dataset, assemble
from prunekit.data.mnist import IdxSet
from prunekit.data.source import Source, data_root
from prunekit.errors import UserError, file_errors


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry: a one-line description, the loader, and a cheap availability check (None: always there).

    A loader is called ``load(cfg)`` and the selected classes (data.classes, data.class_subset) are kept
    afterwards; with ``reads_selected`` it is called ``load(cfg, pick)`` and reads only their files, for sets
    too large to read whole (ImageNet).
    """

    description: str
    load: Callable[..., Source]
    check: Callable[[DictConfig], None] | None = None
    reads_selected: bool = False


_MNIST = IdxSet("mnist", "MNIST", "copy the four IDX files of MNIST into data.root")
_FASHION_MNIST = IdxSet(
    "fashion_mnist",
    "FashionMNIST",
    "install them with `apt-get install dataset-fashion-mnist` and set data.root=/usr/share/datasets/fashion-mnist",
)
_CIFAR10 = CifarSet("cifar10", "CIFAR10", 10)
_CIFAR100 = CifarSet("cifar100", "CIFAR100", 100)

DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        "scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes); works offline", digits.load
    ),
    "synthetic": DatasetSpec(
        "generated classification data (make_classification), fixed; a table or an image", synthetic.load,
        synthetic.check,
    ),
    "mnist": DatasetSpec(
        "MNIST handwritten digits, 28x28 grey; torchvision layout or a folder of IDX files", _MNIST.load,
        _MNIST.check,
    ),
    "fashion_mnist": DatasetSpec(
        "Fashion-MNIST, 28x28 grey clothing; torchvision layout or a folder of IDX files", _FASHION_MNIST.load,
        _FASHION_MNIST.check,
    ),
    "cifar10": DatasetSpec(
        "CIFAR-10, 32x32 colour, 10 classes; torchvision's pickled batches", _CIFAR10.load, _CIFAR10.check
    ),
    "cifar100": DatasetSpec(
        "CIFAR-100, 32x32 colour, 100 classes; torchvision's pickled batches", _CIFAR100.load, _CIFAR100.check
    ),
    "caltech101": DatasetSpec(
        "Caltech101, 101 object classes; JPEG folders, fixed seeded split, resized once and cached", caltech.load,
        caltech.check,
    ),
    "imagenet": DatasetSpec(
        "ImageNet (ILSVRC-2012) wnid folders; only the selected classes are read, resized once and cached",
        imagenet.load, imagenet.check, reads_selected=True,
    ),
}


def _spec(name: str) -> DatasetSpec:
    choice(name, list(DATASETS), "data.name")
    return DATASETS[name]


def check_available(cfg: DictConfig) -> None:
    """Cheap check, before any run directory exists, that ``cfg`` (the data node) can be loaded."""
    spec = _spec(cfg.name)
    if cfg.augment.crop_padding < 0:
        raise UserError(
            f"data.augment.crop_padding={cfg.augment.crop_padding} must be 0 (off) or a positive number of pixels"
        )
    ClassPick.from_config(cfg, seed=0)  # checks the selection as far as it can without the data (any seed)
    if spec.check is not None:
        with file_errors(f"data.root={data_root(cfg)}", "read"):  # e.g. a folder without read permission
            spec.check(cfg)


def load_dataset(cfg: DictConfig, device: torch.device, seed: int = 0) -> Dataset:
    """Load the dataset that ``cfg`` (the data node) names, with its validation split, onto ``device``.

    Only the classes of data.classes or data.class_subset are kept; ``seed`` (the run's) draws the latter.
    """
    check_available(cfg)
    spec, pick = _spec(cfg.name), ClassPick.from_config(cfg, seed)
    with file_errors(f"data.root={data_root(cfg)}", "read"):  # what a loader does not name a file for
        source = spec.load(cfg, pick) if spec.reads_selected else pick.apply(spec.load(cfg))
    return assemble(cfg.name, source, cfg, device)
