"""Folders of image files (Caltech101, ImageNet): read once into uint8 tensors, and a cache of the result.

A cache file holds the images (uint8 N x 3 x S x S) with the list of files they came from; one whose list
no longer matches the folder, or whose images do not match its list, is rebuilt. Caches are written
atomically, and a data folder that cannot be written only costs reading the images again next time.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from prunekit.checkpoints import load_checkpoint
from prunekit.errors import UserError, file_errors, reason

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}

Fit = Callable[[Image.Image, int], Image.Image]  # an RGB image -> that image as size x size


def image_files(folder: Path) -> list[str]:
    """The names of the image files in ``folder``, sorted."""
    return sorted(f.name for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)


def read_images(folder: Path, files: list[str], size: int, fit: Fit) -> torch.Tensor:
    """``files`` (paths relative to ``folder``) as RGB uint8 N x 3 x size x size, each made square by ``fit``."""
    pixels = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, name in enumerate(files):
        pixels[i] = np.asarray(fit(open_rgb(folder / name), size))
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def open_rgb(path: Path) -> Image.Image:
    """The image in the file ``path`` as RGB; a file that cannot be opened or decoded is a UserError naming it."""
    with file_errors(path, "read"):  # a permission or a disk, not the image's bytes
        file = open(path, "rb")
    try:
        with file, Image.open(file) as image:
            return image.convert("RGB")
    except OSError as error:
        raise UserError(f"{path}: not a readable image ({reason(error)}); replace or delete it") from error


def read_cache(path: Path, files: list[str], size: int, dataset: str) -> torch.Tensor | None:
    """The cached images of ``files`` at ``size``, or None when ``path`` is absent, unreadable or stale."""
    if not path.is_file():
        return None
    try:
        cached = load_checkpoint(path)
    except Exception as error:  # noqa: BLE001 - any unreadable cache is simply rebuilt from the images
        log.warning("%s: ignoring unreadable cache %s (%s)", dataset, path, error)
        return None
    if not isinstance(cached, dict) or cached.get("files") != files:
        log.info("%s: %s was built from other files; rebuilding it", dataset, path)
        return None
    x = cached.get("x")
    # The labels come from ``files``, so one image per file, in that order, is what keeps them aligned.
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or tuple(x.shape) != (len(files), 3, size, size):
        log.warning("%s: ignoring cache %s, its images do not match its file list; rebuilding it", dataset, path)
        return None
    return x


def write_cache(path: Path, files: list[str], x: torch.Tensor, dataset: str) -> None:
    """Store ``x``, the images of ``files``, at ``path``."""
    # Atomic (temporary file, then rename) so that a concurrent or killed run never leaves half a cache.
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"files": files, "x": x}, temporary)
        os.replace(temporary, path)
    except OSError as error:
        # A read-only data folder (a shared dataset) only costs the resize on the next run.
        temporary.unlink(missing_ok=True)
        log.warning("%s: cannot write the cache %s (%s); images will be resized again next run", dataset, path, error)
