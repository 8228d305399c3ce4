"""CIFAR-10 and CIFAR-100 from torchvision's pickled batches (``data.root/cifar-10-batches-py`` and
``data.root/cifar-100-python``), downloaded by torchvision's own dataset classes.

The batches are read here, one file at a time, not by torchvision's constructor: that one concatenates
the images and the labels of all files separately, so a file with fewer labels than images would shift
every later label onto the wrong image without an error, and a label out of range could not be traced to
its file. Reading per file lets every check name the damaged file. It also skips torchvision's md5 check
of every file on every run (hashing 180 MB costs time; a download is still verified, as torchvision checks
the archive's md5) and lets the tests read small batches written in the same format.

A batch is unpickled by :class:`BatchUnpickler`, which builds only what a CIFAR batch holds (dicts, lists,
strings, bytes, numbers and numpy arrays): plain ``pickle.load`` would run whatever code a crafted file
under ``data.root`` names.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from prunekit.data.registry import register_dataset
from prunekit.data.source import Source, check_label_range, data_root, reason, torchvision_dataset
from prunekit.errors import UserError, file_errors

LABEL_KEYS = ("labels", "fine_labels")  # CIFAR-10's key, else CIFAR-100's (its 100 classes, not the 20 coarse)
# The only globals a batch names: numpy's array and dtype reconstruction. torchvision's files were written by
# numpy 1 (numpy.core), files saved again by numpy 2 name numpy._core; protocol 5 rebuilds arrays from a buffer.
# Dicts, lists, strings, bytes and numbers need no global at all.
_RECONSTRUCT, _FROMBUFFER = np.zeros(0).__reduce__()[0], np.zeros(0).__reduce_ex__(5)[0]
BATCH_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ForeignObject(pickle.UnpicklingError):
    """A pickle names a global that a CIFAR batch never holds."""


class BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only the contents of a CIFAR batch and refuses every other global."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return BATCH_GLOBALS[module, name]
        except KeyError:
            raise ForeignObject(f"{module}.{name}") from None


@dataclass(frozen=True)
class CifarSet:
    """One CIFAR variant: its title, torchvision class (file names, folder, download) and number of classes."""

    title: str
    torchvision_name: str  # the torchvision dataset class (its folder name and downloader), imported when used
    num_classes: int

    @property
    def torchvision_class(self) -> type:
        return torchvision_dataset(self.torchvision_name)

    def files(self, root: Path, train: bool | None = None) -> list[Path]:
        """The batch files under ``root``: train or test ones, or all (None), in torchvision's order."""
        tv = self.torchvision_class
        lists = {True: tv.train_list, False: tv.test_list, None: tv.train_list + tv.test_list}[train]
        return [root / tv.base_folder / name for name, _ in lists]

    def check(self, cfg: DictConfig) -> None:
        """Raise UserError unless every batch file is present or ``data.download`` is on."""
        root = data_root(cfg)
        missing = [path for path in self.files(root) if not path.is_file()]
        if missing and not cfg.download:
            raise UserError(
                f"{self.title}: {missing[0]} not found; put torchvision's {self.torchvision_class.base_folder} "
                f"folder in data.root={root}, or set data.download=true"
            )

    def load(self, cfg: DictConfig) -> Source:
        """Train and test batches as uint8 N x 3 x 32 x 32 images, downloaded first if missing and allowed."""
        self.check(cfg)
        root = data_root(cfg)
        if not all(path.is_file() for path in self.files(root)):
            self._download(root)
        train_x, train_y = self._read_split(root, train=True)
        test_x, test_y = self._read_split(root, train=False)
        return Source(train_x, train_y, test_x, test_y, self.num_classes)

    def _read_split(self, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        batches = [self._read_batch(path) for path in self.files(root, train)]
        images = np.concatenate([x for x, _ in batches])
        return torch.from_numpy(images), torch.cat([y for _, y in batches])

    def _read_batch(self, path: Path) -> tuple[np.ndarray, torch.Tensor]:
        # One pickled dict: "data" holds N rows of 3072 bytes (the 3 colour planes of 32 x 32, already the
        # N x C x H x W order the models want), the label key N class indices.
        with file_errors(path, "read"):  # a permission or a disk, not the file's bytes
            file = path.open("rb")
        try:
            with file:
                entry = BatchUnpickler(file, encoding="latin1").load()
            key = next((key for key in LABEL_KEYS if key in entry), LABEL_KEYS[0])
            images = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = torch.as_tensor(entry[key], dtype=torch.long).reshape(-1)
        except ForeignObject as error:
            raise UserError(
                f"{path}: refused, it asks to build {error}, which a CIFAR batch never holds (only dicts, lists, "
                f"strings, bytes, numbers and numpy arrays); replace it from a fresh copy of torchvision's "
                f"{self.torchvision_class.base_folder} folder"
            ) from error
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, OverflowError,
                RuntimeError) as error:  # what damaged bytes or a foreign pickle make pickle, numpy or torch raise
            raise UserError(
                f"{path}: cannot be read ({reason(error)}); the file is damaged, replace it from a fresh copy "
                f"of torchvision's {self.torchvision_class.base_folder} folder"
            ) from error
        if len(images) != len(labels):
            raise UserError(
                f"{path} holds {len(images)} images but {len(labels)} labels; the file is damaged, replace it "
                f"from a fresh copy of torchvision's {self.torchvision_class.base_folder} folder"
            )
        check_label_range(path, labels, self.num_classes)
        return images, labels

    def _download(self, root: Path) -> None:
        try:
            self.torchvision_class(str(root), train=False, download=True)
        except (RuntimeError, OSError) as error:
            raise UserError(
                f"{self.title}: download of {self.torchvision_class.url} to {root} failed ({reason(error)}); "
                f"copy torchvision's {self.torchvision_class.base_folder} folder into {root} instead"
            ) from error


_CIFAR10 = CifarSet("cifar10", "CIFAR10", 10)
_CIFAR100 = CifarSet("cifar100", "CIFAR100", 100)
register_dataset("cifar10", check=_CIFAR10.check,
                 description="CIFAR-10, 32x32 colour, 10 classes; torchvision's pickled batches")(_CIFAR10.load)
register_dataset("cifar100", check=_CIFAR100.check,
                 description="CIFAR-100, 32x32 colour, 100 classes; torchvision's pickled batches")(_CIFAR100.load)
