"""MNIST and Fashion-MNIST from their four IDX files.

The files are found in either layout, first match wins:

- a plain folder: ``data.root/train-images-idx3-ubyte[.gz]`` and the other three (Debian's
  ``dataset-fashion-mnist`` installs this in /usr/share/datasets/fashion-mnist);
- torchvision's: ``data.root/MNIST/raw/...`` or ``data.root/FashionMNIST/raw/...``, where
  ``data.download=true`` puts them (through torchvision's own download).

The IDX reader is ours, not torchvision's ``read_image_file``: that one cannot read gzip and checks the
header with ``assert``, so a damaged file would fail with an AssertionError (or not at all under -O)
instead of a message that names the file.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from prunekit.data.registry import register_dataset
from prunekit.data.source import Source, check_label_range, data_root, reason, torchvision_dataset
from prunekit.errors import UserError, file_errors

FILES = {  # role -> (file name without .gz, number of dimensions)
    "train_x": ("train-images-idx3-ubyte", 3),
    "train_y": ("train-labels-idx1-ubyte", 1),
    "test_x": ("t10k-images-idx3-ubyte", 3),
    "test_y": ("t10k-labels-idx1-ubyte", 1),
}
UBYTE = 0x08  # IDX type code of unsigned bytes, the only one these sets use
NUM_CLASSES = 10  # both MNIST and Fashion-MNIST
IMAGE_SIZE = (28, 28)  # both, too: a file of other images belongs to another dataset


@dataclass(frozen=True)
class IdxSet:
    """One IDX-file dataset: its title, torchvision class (folder name, download) and how to get it offline."""

    title: str
    torchvision_name: str  # the torchvision dataset class (its folder name and downloader), imported when used
    how_to_get: str

    @property
    def torchvision_class(self) -> type:
        return torchvision_dataset(self.torchvision_name)

    def folders(self, root: Path) -> list[Path]:
        """Where the files may lie, in the order searched."""
        return [root, root / self.torchvision_name / "raw"]

    def find(self, root: Path) -> dict[str, Path] | None:
        """Paths of the four files in the first folder that holds them all (uncompressed preferred), or None."""
        for folder in self.folders(root):
            found = {}
            for role, (name, _) in FILES.items():
                found[role] = next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)
            if all(found.values()):
                return found
        return None

    def check(self, cfg: DictConfig) -> None:
        """Raise UserError unless the files are present or ``data.download`` is on."""
        root = data_root(cfg)
        if not cfg.download and self.find(root) is None:
            names = ", ".join(f"{name}[.gz]" for name, _ in FILES.values())
            where = " or ".join(str(folder) for folder in self.folders(root))
            raise UserError(
                f"{self.title}: {names} not found in {where}; {self.how_to_get}, or set data.download=true"
            )

    def load(self, cfg: DictConfig) -> Source:
        """The four files as uint8 N x 1 x 28 x 28 images and int64 labels, downloaded first if allowed."""
        self.check(cfg)
        root = data_root(cfg)
        paths = self.find(root) or self._download(root)
        tensors = {role: read_idx(paths[role], FILES[role][1]) for role in FILES}
        for split in ("train", "test"):
            images, labels = tensors[f"{split}_x"], tensors[f"{split}_y"]
            if tuple(images.shape[1:]) != IMAGE_SIZE:
                raise UserError(
                    f"{paths[f'{split}_x']} holds {'x'.join(map(str, images.shape[1:]))} images but {self.title} "
                    f"images are {'x'.join(map(str, IMAGE_SIZE))}; the file belongs to another dataset, replace it"
                )
            if len(images) != len(labels):
                raise UserError(
                    f"{paths[f'{split}_x']} holds {len(images)} images but {paths[f'{split}_y']} holds "
                    f"{len(labels)} labels; one of them is damaged, replace both"
                )
            check_label_range(paths[f"{split}_y"], labels, NUM_CLASSES)
        return Source(
            train_x=tensors["train_x"].unsqueeze(1),
            train_y=tensors["train_y"].long(),
            test_x=tensors["test_x"].unsqueeze(1),
            test_y=tensors["test_y"].long(),
            num_classes=NUM_CLASSES,
        )

    def _download(self, root: Path) -> dict[str, Path] | None:
        raw = self.folders(root)[-1]
        try:
            self.torchvision_class(str(root), train=False, download=True)
        except (RuntimeError, OSError) as error:
            raise UserError(f"{self.title}: download to {raw} failed ({reason(error)}); {self.how_to_get}") from error
        # torchvision's constructor has checked that the four files now exist in the raw folder.
        return self.find(root)


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """The uint8 array in an IDX file (gzip when the name ends in .gz); UserError naming a damaged file."""
    with file_errors(path, "read"):  # a permission or a disk, not the file's bytes
        data = path.read_bytes()
    try:
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"{path}: cannot be read ({reason(error)}); the file is damaged, replace it") from error
    header = 4 + 4 * ndim
    magic, expected = data[:4], struct.pack(">HBB", 0, UBYTE, ndim)
    if len(data) < header or magic != expected:
        raise UserError(
            f"{path}: bad IDX magic number 0x{magic.hex()}, expected 0x{expected.hex()} "
            f"(unsigned bytes, {ndim} dimension(s)); the file is damaged or not this IDX file, replace it"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != math.prod(shape):
        raise UserError(
            f"{path}: the header promises {'x'.join(map(str, shape))} = {math.prod(shape)} bytes but "
            f"{len(data) - header} follow; the file is truncated or damaged, replace it"
        )
    if not math.prod(shape):  # frombuffer refuses an empty buffer; the empty split is refused by name later
        return torch.empty(shape, dtype=torch.uint8)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header).view(shape)


_MNIST = IdxSet("mnist", "MNIST", "copy the four IDX files of MNIST into data.root")
_FASHION_MNIST = IdxSet(
    "fashion_mnist",
    "FashionMNIST",
    "install them with `apt-get install dataset-fashion-mnist` and set data.root=/usr/share/datasets/fashion-mnist",
)
register_dataset("mnist", check=_MNIST.check,
                 description="MNIST handwritten digits, 28x28 grey; torchvision layout or a folder of IDX files")(_MNIST.load)
register_dataset("fashion_mnist", check=_FASHION_MNIST.check,
                 description="Fashion-MNIST, 28x28 grey clothing; torchvision layout or a folder of IDX files")(
    _FASHION_MNIST.load)
