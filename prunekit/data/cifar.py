"""CIFAR-10 and CIFAR-100 from torchvision's pickled batches (``data.root/cifar-10-batches-py`` and
``data.root/cifar-100-python``), read by torchvision's own dataset classes.

torchvision compares every file with the md5 of the official release before reading it. We read through
a subclass that only asks for the files to exist: hashing 180 MB costs time on every run, a download is
still verified (torchvision checks the archive's md5), and a damaged file still fails to unpickle or to
reshape, which becomes a UserError. It also lets the tests read small batches written in the same format.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from prunekit.data.source import Source, data_root, reason
from prunekit.errors import UserError


def without_md5(torchvision_class: type) -> type:
    """``torchvision_class`` with its md5 checks reduced to "the file exists" (md5 None in check_integrity)."""
    return type(
        torchvision_class.__name__,
        (torchvision_class,),
        {
            "train_list": [[name, None] for name, _ in torchvision_class.train_list],
            "test_list": [[name, None] for name, _ in torchvision_class.test_list],
            "meta": {**torchvision_class.meta, "md5": None},
        },
    )


@dataclass(frozen=True)
class CifarSet:
    """One CIFAR variant: its title, torchvision class and number of classes."""

    title: str
    torchvision_class: type
    num_classes: int

    def files(self, root: Path) -> list[Path]:
        """Every file torchvision reads, in its folder under ``root``."""
        tv = self.torchvision_class
        names = [name for name, _ in tv.train_list + tv.test_list] + [tv.meta["filename"]]
        return [root / tv.base_folder / name for name in names]

    def check(self, cfg: DictConfig) -> None:
        """Raise UserError unless every file is present or ``data.download`` is on."""
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
        reader = without_md5(self.torchvision_class)
        folder = root / self.torchvision_class.base_folder
        try:
            train, test = reader(str(root), train=True), reader(str(root), train=False)
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, OSError) as error:
            raise UserError(
                f"{self.title}: the batches in {folder} cannot be read ({reason(error)}); they are damaged, "
                "delete the folder and copy or download it again"
            ) from error
        return Source(
            train_x=_channels_first(train.data),
            train_y=torch.tensor(train.targets, dtype=torch.long),
            test_x=_channels_first(test.data),
            test_y=torch.tensor(test.targets, dtype=torch.long),
            num_classes=self.num_classes,
        )

    def _download(self, root: Path) -> None:
        try:
            self.torchvision_class(str(root), train=False, download=True)
        except (RuntimeError, OSError) as error:
            raise UserError(
                f"{self.title}: download of {self.torchvision_class.url} to {root} failed ({reason(error)}); "
                f"copy torchvision's {self.torchvision_class.base_folder} folder into {root} instead"
            ) from error


def _channels_first(images) -> torch.Tensor:
    # torchvision holds N x H x W x C (for PIL); the models want N x C x H x W.
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
