"""Caltech101 from torchvision's layout: ``data.root/caltech101/101_ObjectCategories/<class>/*.jpg``.

- Classes are the sorted folder names without BACKGROUND_Google (clutter, not a class; torchvision drops
  it too), so there are 101 of them.
- Every image is converted to RGB and resized once to ``image_size`` x ``image_size`` (bilinear, the
  aspect ratio is not kept). The uint8 result is cached in
  ``data.root/caltech101/prunekit_cache_<image_size>.pt`` (written atomically) together with the list of
  files it came from; a cache whose list no longer matches the folder is rebuilt. The split is not part
  of the cache key: it is cheap to redo, and changing it then costs no second pass over the JPEGs.
- Caltech101 has no official split. The test split holds ``round(test_fraction * n)`` images of every
  class, drawn by a generator seeded with ``split_seed`` (:func:`prunekit.data.source.stratified_split`):
  it depends on those two values only, never on the run's seed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from PIL import Image

from prunekit.config import DataConfig, ranged
from prunekit.data.images import image_files, read_cache, read_images, write_cache
from prunekit.data.registry import register_dataset
from prunekit.data.source import Source, data_root, reason, torchvision_dataset
from prunekit.errors import UserError

log = logging.getLogger(__name__)
BACKGROUND = "BACKGROUND_Google"


@dataclass
class Caltech101DataConfig(DataConfig):
    image_size: int = ranged(64, 1)  # every image is resized once to image_size x image_size and cached
    test_fraction: float = ranged(0.2, 0.0, 1.0, low_open=True, high_open=True)  # per-class share of the test split
    split_seed: int = ranged(0, 0)  # the split is fixed by this seed, not by the run's seed


def categories_dir(cfg: DictConfig) -> Path:
    """The folder that holds one sub-folder per class."""
    return data_root(cfg) / "caltech101" / "101_ObjectCategories"


def check(cfg: DictConfig) -> None:
    """Raise UserError for a bad split or size, or when the images are absent and download is off."""
    if not 0 < cfg.test_fraction < 1:
        raise UserError(f"data.test_fraction={cfg.test_fraction} must lie strictly between 0 and 1")
    if cfg.image_size < 1:
        raise UserError(f"data.image_size={cfg.image_size} must be a positive number of pixels")
    if not cfg.download and not categories_dir(cfg).is_dir():
        raise UserError(
            f"caltech101: {categories_dir(cfg)} not found; put torchvision's caltech101 folder in "
            f"data.root={data_root(cfg)}, or set data.download=true"
        )


@register_dataset("caltech101", config=Caltech101DataConfig, check=check,
                  description="Caltech101, 101 object classes; JPEG folders, fixed seeded split, resized once and cached")
def load(cfg: DictConfig) -> Source:
    """All images as uint8 N x 3 x S x S, from the cache when it is current, with the fixed test split."""
    check(cfg)
    folder = categories_dir(cfg)
    if not folder.is_dir():
        _download(cfg)
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and d.name != BACKGROUND)
    files = [f"{name}/{file}" for name in classes for file in image_files(folder / name)]
    if not files:
        raise UserError(f"caltech101: no images (*.jpg) in the class folders of {folder}; the copy is incomplete")
    cache = folder.parent / f"prunekit_cache_{cfg.image_size}.pt"
    x = read_cache(cache, files, cfg.image_size, "caltech101")
    if x is None:
        x = _resize_all(folder, files, cfg.image_size)
        write_cache(cache, files, x, "caltech101")
    index = {name: i for i, name in enumerate(classes)}
    y = torch.tensor([index[f.split("/")[0]] for f in files], dtype=torch.long)
    return Source.held_out(x, y, len(classes), cfg.test_fraction, cfg.split_seed)


def _resize_all(folder: Path, files: list[str], size: int) -> torch.Tensor:
    """Every image stretched to size x size (the aspect ratio is not kept)."""
    log.info("caltech101: resizing %d images to %dx%d once; later runs read the cache", len(files), size, size)
    return read_images(folder, files, size, _stretch)


def _stretch(image: Image.Image, size: int) -> Image.Image:
    return image.resize((size, size), Image.Resampling.BILINEAR)


def _download(cfg: DictConfig) -> None:
    root = data_root(cfg)
    try:
        torchvision_dataset("Caltech101")(str(root), download=True)
    except (RuntimeError, OSError) as error:
        raise UserError(
            f"caltech101: download to {root / 'caltech101'} failed ({reason(error)}); copy torchvision's "
            f"caltech101 folder (with 101_ObjectCategories) into data.root={root} instead"
        ) from error
