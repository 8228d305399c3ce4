"""ImageNet (ILSVRC-2012) in torchvision's ImageFolder layout: ``data.root/imagenet/{train,val}/<wnid>/*.JPEG``.

- A class is a wnid folder of train; its label is the folder's position among them in sorted order. That
  is torchvision's ImageFolder order and, with all 1000 folders there, the order of the rows of
  torchvision's pretrained classifiers (prunekit/models/weights.py keeps those rows for a class subset).
- Only the selected classes' folders are read (data.classes, data.class_subset): a 3-class subset costs
  three folders. The whole set does not fit in memory at 224 (about 190 GB as uint8): with every class it
  streams from the files by default (data.streaming, prunekit/data/streaming.py), a subset is held in memory.
- Every image is converted to RGB, its shorter side resized to ``round(image_size * 8 / 7)`` and centre
  cropped to ``image_size`` (at 224: the usual 256 and 224). The result is cached per split and class in
  ``data.root/imagenet/prunekit_cache_<image_size>/<split>/<wnid>.pt`` (prunekit/data/images.py).
- train is the train folder and test the val folder (ImageNet's test labels were never published); the
  validation split is carved from train as for every dataset.
- Inputs are normalised with ImageNet's mean and std, which pretrained networks expect, not with
  statistics of the subset at hand.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from PIL import Image

from prunekit.config import ranged
from prunekit.data.classes import ClassPick
from prunekit.data.images import image_files, read_cache, read_images, write_cache
from prunekit.data.registry import register_dataset
from prunekit.data.source import Source, data_root
from prunekit.data.streaming import ImageFiles, StreamingDataConfig
from prunekit.errors import UserError

log = logging.getLogger(__name__)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RESIZE_RATIO = 8 / 7  # shorter side over crop size: 256 / 224


@dataclass
class ImageNetDataConfig(StreamingDataConfig):
    # Shorter side resized to image_size * 8 / 7, then a centre crop of image_size (224: the usual 256 -> 224);
    # streamed train batches are a RandomResizedCrop of image_size instead (data.augment.resized_crop).
    image_size: int = ranged(224, 1)


def imagenet_dir(cfg: DictConfig) -> Path:
    """The folder that holds ``train`` and ``val``."""
    return data_root(cfg) / "imagenet"


def check(cfg: DictConfig) -> None:
    """Raise UserError when the train or val folder is absent (ImageNet is never downloaded for you)."""
    for split in ("train", "val"):
        if not (imagenet_dir(cfg) / split).is_dir():
            raise UserError(
                f"imagenet: {imagenet_dir(cfg) / split} not found; ImageNet cannot be downloaded automatically: "
                f"put ILSVRC-2012's train and val folders (one sub-folder per wnid) in {imagenet_dir(cfg)}"
            )


def list_files(cfg: DictConfig, pick: ClassPick) -> ImageFiles:
    """The files of the classes ``pick`` selects, labelled 0..K-1, for the streaming path: train from the train
    folder and test from the val folder, in the order :func:`load` reads them."""
    root, chosen, classes, total = _select(cfg, pick)
    split_files = {}
    for split in ("train", "val"):
        names = [[f"{split}/{wnid}/{name}" for name in _image_files(root / split / wnid)] for wnid in chosen]
        labels = torch.cat([torch.full((len(part),), label, dtype=torch.long) for label, part in enumerate(names)])
        split_files[split] = [name for part in names for name in part], labels
    return ImageFiles(root, *split_files["train"], *split_files["val"], len(chosen), cfg.image_size,
                      _resize_and_crop, MEAN, STD, classes=classes, total_classes=total)


@register_dataset("imagenet", config=ImageNetDataConfig, check=check, reads_selected=True, files=list_files,
                  description="ImageNet (ILSVRC-2012) wnid folders; streamed from the files, or the selected classes "
                              "read, resized once and cached")
def load(cfg: DictConfig, pick: ClassPick) -> Source:
    """The images of the classes ``pick`` selects (every class without a selection), relabelled 0..K-1."""
    root, chosen, classes, total = _select(cfg, pick)
    train_x, train_y = _read_split(root, "train", chosen, cfg.image_size)
    test_x, test_y = _read_split(root, "val", chosen, cfg.image_size)
    return Source(train_x, train_y, test_x, test_y, len(chosen), classes=classes, total_classes=total,
                  mean=MEAN, std=STD)


def _select(cfg: DictConfig, pick: ClassPick) -> tuple[Path, list[str], list[int] | None, int | None]:
    """The ImageNet folder, the wnids of the classes ``pick`` selects in the order of their labels, their labels
    among all wnids (None: every class) and the number of all wnids (None: every class)."""
    check(cfg)
    root = imagenet_dir(cfg)
    wnids = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if not wnids:
        raise UserError(f"imagenet: {root / 'train'} holds no class folders (one per wnid); the copy is incomplete")
    strays = sorted({d.name for d in (root / "val").iterdir() if d.is_dir()} - set(wnids))
    if strays:
        raise UserError(
            f"imagenet: {root / 'val' / strays[0]} is not a class of {root / 'train'}; val must be sorted into "
            "the same wnid folders as train"
        )
    classes = pick.resolve(len(wnids))
    chosen = [wnids[label] for label in (classes if classes is not None else range(len(wnids)))]
    return root, chosen, classes, len(wnids) if classes is not None else None


def _read_split(root: Path, split: str, wnids: list[str], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of ``wnids`` in ``split``, labelled by their position in ``wnids``; cached per class."""
    folders = [root / split / wnid for wnid in wnids]
    caches = [root / f"prunekit_cache_{size}" / split / f"{wnid}.pt" for wnid in wnids]
    files = [_image_files(folder) for folder in folders]
    parts = [read_cache(cache, names, size, "imagenet") for cache, names in zip(caches, files, strict=True)]
    stale = [i for i, x in enumerate(parts) if x is None]
    if stale:
        log.info("imagenet: resizing %d %s images of %d classes to %dx%d once; later runs read the cache",
                 sum(len(files[i]) for i in stale), split, len(stale), size, size)
    for i in stale:
        parts[i] = read_images(folders[i], files[i], size, _resize_and_crop)
        write_cache(caches[i], files[i], parts[i], "imagenet")
    labels = [torch.full((len(x),), label, dtype=torch.long) for label, x in enumerate(parts)]
    return torch.cat(parts), torch.cat(labels)


def _image_files(folder: Path) -> list[str]:
    files = image_files(folder) if folder.is_dir() else []
    if not files:
        raise UserError(f"imagenet: no images (*.JPEG) in {folder}; every class used needs train and val images")
    return files


def _resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    scale = round(size * RESIZE_RATIO) / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))
