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
import os
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from prunekit.data.source import Source, data_root, reason, torchvision_dataset
from prunekit.errors import UserError

log = logging.getLogger(__name__)
BACKGROUND = "BACKGROUND_Google"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


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


def load(cfg: DictConfig) -> Source:
    """All images as uint8 N x 3 x S x S, from the cache when it is current, with the fixed test split."""
    check(cfg)
    folder = categories_dir(cfg)
    if not folder.is_dir():
        _download(cfg)
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and d.name != BACKGROUND)
    files = [
        f"{name}/{f.name}"
        for name in classes
        for f in sorted((folder / name).iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise UserError(f"caltech101: no images (*.jpg) in the class folders of {folder}; the copy is incomplete")
    cache = folder.parent / f"prunekit_cache_{cfg.image_size}.pt"
    x = _read_cache(cache, files, cfg.image_size)
    if x is None:
        x = _resize_all(folder, files, cfg.image_size)
        _write_cache(cache, {"files": files, "x": x})
    index = {name: i for i, name in enumerate(classes)}
    y = torch.tensor([index[f.split("/")[0]] for f in files], dtype=torch.long)
    return Source.held_out(x, y, len(classes), cfg.test_fraction, cfg.split_seed)


def _resize_all(folder: Path, files: list[str], size: int) -> torch.Tensor:
    log.info("caltech101: resizing %d images to %dx%d once; later runs read the cache", len(files), size, size)
    pixels = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, name in enumerate(files):
        try:
            with Image.open(folder / name) as image:
                pixels[i] = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
        except OSError as error:
            raise UserError(f"{folder / name}: not a readable image ({reason(error)}); replace or delete it") from error
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def _read_cache(path: Path, files: list[str], size: int) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        cached = torch.load(path, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable cache is simply rebuilt from the images
        log.warning("caltech101: ignoring unreadable cache %s (%s)", path, error)
        return None
    if not isinstance(cached, dict) or cached.get("files") != files:
        log.info("caltech101: %s was built from other files; rebuilding it", path)
        return None
    x = cached.get("x")
    # The labels come from ``files``, so one image per file, in that order, is what keeps them aligned.
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or tuple(x.shape) != (len(files), 3, size, size):
        log.warning("caltech101: ignoring cache %s, its images do not match its file list; rebuilding it", path)
        return None
    return x


def _write_cache(path: Path, payload: dict) -> None:
    # Atomic (temporary file, then rename) so that a concurrent or killed run never leaves half a cache.
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    except OSError as error:
        # A read-only data folder (a shared dataset) only costs the resize on the next run.
        temporary.unlink(missing_ok=True)
        log.warning("caltech101: cannot write the cache %s (%s); images will be resized again next run", path, error)


def _download(cfg: DictConfig) -> None:
    root = data_root(cfg)
    try:
        torchvision_dataset("Caltech101")(str(root), download=True)
    except (RuntimeError, OSError) as error:
        raise UserError(
            f"caltech101: download to {root / 'caltech101'} failed ({reason(error)}); copy torchvision's "
            f"caltech101 folder (with 101_ObjectCategories) into data.root={root} instead"
        ) from error
